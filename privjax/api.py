"""The Python API a notebook uses, re-exported at the top: `privjax.load_run`, `privjax.load_report`,
`privjax.compare` and `privjax.report_dir`.

  run = privjax.load_run('runs/mine')                    # restored model, config, data builder
  data = run.features('attacker_test')                   # cut features and labels of a split
  report = privjax.load_report('runs/mine')              # its evaluation's report dict
  df = privjax.compare({'baseline': 'runs/base', 'mine': 'runs/mine'})
  df[(df.role == 'leak') & df.baseline].sort_values('value', ascending=False)

`compare` returns the long DataFrame of privjax.report.frame (one row per run × setting × metric;
its columns are listed there). A run directory stands for the report of its evaluation with
`eval_config` (default configs/eval/default.py), in that evaluation's report folder
(`report_dir`, which is privjax.evaluate.protocol.report_dir: its pictures are there too).

Everything is imported when called, never at `import privjax`: this module imports only the
standard library (no jax, no pandas).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_EVAL_CONFIG = 'configs/eval/default.py'


def load_run(workdir, step: int | None = None, *, data_dir: str | None = None):
  """The run in `workdir` restored at checkpoint `step` (default: the latest): a
  `privjax.evaluate.features.Run` with its `config`, `model` (a SplitModel), `defence` and data
  `builder`. `data_dir` replaces the data directory the run was trained with."""
  from privjax.evaluate import features

  return features.load_run(os.fspath(workdir), step, data_dir=data_dir)


def _eval_config(eval_config):
  from privjax import config_args

  if eval_config is None:
    eval_config = DEFAULT_EVAL_CONFIG
  return config_args.load(eval_config) if isinstance(eval_config, str) else eval_config


def load_report(path_or_run_dir, *, eval_config=None, step: int | None = None) -> dict:
  """The report dict (format privjax.report/2) at `path_or_run_dir`: a report.json, a folder holding
  one, or a run directory (then the report of its evaluation with `eval_config`, a config or a
  'FILE[:args]' string, default configs/eval/default.py, at checkpoint `step`, default the run's
  latest)."""
  from privjax import paths
  from privjax.report import tables

  path = os.fspath(path_or_run_dir)
  found = paths.as_path(path)
  if found.is_file() or (found / 'report.json').exists():
    return tables.load_report(path)
  if not found.is_dir():
    raise FileNotFoundError(f'no report or run directory at {path}')
  return tables.load_report(report_dir(path, eval_config=eval_config, step=step))


def report_dir(run_dir, *, eval_config=None, step: int | None = None) -> str:
  """The report folder of the evaluation of the run in `run_dir` at checkpoint `step` (None: its
  latest) with `eval_config` (a config or a 'FILE[:args]' string, default
  configs/eval/default.py): privjax.evaluate.protocol.report_dir."""
  from privjax.evaluate import protocol

  return protocol.report_dir(os.fspath(run_dir), _eval_config(eval_config), step)


def _report_of(item, eval_config) -> dict:
  if isinstance(item, Mapping):
    from privjax.errors import EvalError
    from privjax.metrics import results

    if item.get('format') != results.REPORT_FORMAT:
      raise EvalError(
          f'a report dict of format {item.get("format")!r}; this version reads '
          f'{results.REPORT_FORMAT!r}'
      )
    return dict(item)
  if hasattr(item, 'workdir') and hasattr(item, 'step'):  # a loaded Run
    from privjax.errors import EvalError

    report = load_report(item.workdir, eval_config=eval_config)
    if report['step'] != item.step:
      raise EvalError(
          f'the report of {item.workdir} evaluates checkpoint step {report["step"]}, the run '
          f'was loaded at step {item.step}; evaluate that step or load the run at it'
      )
    return report
  return load_report(item, eval_config=eval_config)


def _default_name(report: dict) -> str:
  return os.path.basename(str(report['workdir']).rstrip('/'))


def compare(runs_or_reports, names=None, *, eval_config=None):
  """A pandas DataFrame with one row per run × setting × metric of the runs or reports given.

  `runs_or_reports`: a list of report dicts, report paths, run directories or loaded runs, or a
  {name: one of those} dict. `names` (for a list): the runs' names, by default each report's run
  directory's last component (names must differ). Columns: run, setting, transform,
  noise_variance, baseline, metric, label, value, se, unit, role, secret, uploads, note (see
  privjax.report.frame). Needs pandas (the `notebook` extra).
  """
  from privjax.errors import ConfigError
  from privjax.report import frame

  frame.require_pandas()
  if isinstance(runs_or_reports, Mapping):
    if names is not None:
      raise ConfigError('give names either as the dict keys or as `names`, not both')
    names, runs_or_reports = list(runs_or_reports), list(runs_or_reports.values())
  else:
    runs_or_reports = list(runs_or_reports)
  if not runs_or_reports:
    raise ConfigError('compare needs at least one run or report')
  reports = [_report_of(item, eval_config) for item in runs_or_reports]
  names = [_default_name(r) for r in reports] if names is None else [str(n) for n in names]
  if len(names) != len(reports):
    raise ConfigError(f'{len(reports)} runs or reports but {len(names)} names')
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ConfigError(
        f'runs named twice: {", ".join(twice)}; give distinct names (names=[...] or a dict)'
    )
  return frame.metrics_frame(reports, names)
