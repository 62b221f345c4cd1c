r"""The paper's pipeline end to end: simple fine-tuning, Siamese fine-tuning from it, evaluation.

  python -m privjax.reproduce --workdir runs/demo [--config configs/default.py[:args]] \
      [--config.key=value ...] [--eval_config configs/eval/default.py:fast] [--eval_config.key=value]

(`privjax-reproduce` once installed, same flags.) Runs, each in its own sub-directory of --workdir (a
rerun resumes whatever is unfinished):
  simple               primary-task training (the non-private baseline)
  siamese              Siamese fine-tuning from `simple`, the paper's margin (contrastive.margin)
  siamese_calibrated   the same with the margin calibrated to the features at the start
then evaluates all three and writes the side-by-side table to --workdir/compare.md.

The config file is loaded once per run with the run's arguments added to those after the colon
(`simple`, `siamese,calibrated`, ...); the --config.key=value overrides apply to every run, except
the keys the pipeline sets itself (the defence, `init_from`). `--config_args A,B` is the older
spelling of `--config FILE:A,B` and is added to the file's arguments.
"""

from __future__ import annotations

import time

from absl import app, flags
from ml_collections import config_flags

from privjax import cli, config_args, paths
from privjax.config import ConfigError

DEFAULT_CONFIG = 'configs/default.py'
DEFAULT_EVAL_CONFIG = 'configs/eval/default.py:fast'
DEFAULT_VARIANTS = ('simple', 'siamese', 'siamese_calibrated')

# variant → (config arguments, run it starts from)
VARIANTS = {
    'simple': ('simple', None),
    'siamese': ('siamese', 'simple'),
    'siamese_calibrated': ('siamese,calibrated', 'simple'),
    'siamese_normalized': ('siamese,normalized', 'simple'),
}
# Config keys each variant sets: an override of one would contradict --variants.
PIPELINE_KEYS = ('mode', 'defence.name', 'init_from')


def define_flags(
    config: str = DEFAULT_CONFIG,
    eval_config: str = DEFAULT_EVAL_CONFIG,
    variants=DEFAULT_VARIANTS,
):
  """The command's flags (privjax.sweep defines them with the paper's defaults); defined only when run
  as a program, so importing this module (tests, the notebook) defines none."""
  flags.DEFINE_string('workdir', None, 'Directory for the runs and the comparison.')
  config_args.DEFINE_config_file(
      'config',
      config,
      'Training config file[:args]; --config.key=value overrides apply to every run.',
  )
  flags.DEFINE_string(
      'config_args',
      '',
      'Older spelling of --config FILE:ARGS: comma-separated config arguments added to those of '
      '--config (for example "tiny").',
  )
  config_args.DEFINE_config_file('eval_config', eval_config, 'Evaluation config file[:args].')
  flags.DEFINE_list('variants', list(variants), 'Which runs to train and evaluate, in order.')
  flags.DEFINE_string('data_dir', None, "TFDS data dir (default: the config's).")
  flags.mark_flag_as_required('workdir')


def load_config(path: str, arg: str = '', overrides=None):
  """The config file at `path` (see privjax.config_args.resolve) for `arg`, with `overrides`."""
  return config_args.apply_overrides(config_args.config_module(path).get_config(arg), overrides)


def config_request(flag_values=None) -> tuple[str, str, dict]:
  """(file, arguments, overrides) of the --config flag (with --config_args added)."""
  f = flag_values if flag_values is not None else flags.FLAGS
  path, _, args = config_flags.get_config_filename(f['config']).partition(':')
  return (
      path,
      config_args.join(args, f.config_args),
      dict(config_flags.get_override_values(f['config'])),
  )


def run_pipeline(
    workdir: str,
    config_path: str,
    extra_args: str,
    eval_config,
    variants,
    data_dir: str | None = None,
    overrides=None,
) -> str:
  """Trains `variants` from the config file at `config_path` (arguments `extra_args` and the
  variant's, then `overrides`, {'a.b': value}), evaluates each with `eval_config`, compares them."""
  from privjax.evaluate import protocol
  from privjax.report import plots, tables
  from privjax.train import loop

  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ConfigError(f'unknown variant(s) {unknown}; valid: {", ".join(VARIANTS)}')
  fixed = sorted(k for k in overrides or {} if k in PIPELINE_KEYS)
  if fixed:
    raise ConfigError(
        f'--config.{fixed[0]} is set by each run of the pipeline; choose the runs with --variants'
    )
  timings, reports = {}, []
  for name in variants:
    args, parent = VARIANTS[name]
    config = load_config(config_path, config_args.join(args, extra_args), overrides)
    if data_dir:
      config.dataset.data_dir = data_dir
    if parent:
      if parent not in variants:
        raise ConfigError(f'variant {name} starts from {parent}; include {parent} in --variants')
      config.init_from = paths.join(workdir, parent)
    t0 = time.perf_counter()
    print(f'== training {name}', flush=True)
    loop.train_and_evaluate(config, paths.join(workdir, name))
    timings[f'train_{name}'] = time.perf_counter() - t0
  for name in variants:
    t0 = time.perf_counter()
    print(f'== evaluating {name}', flush=True)
    ec = eval_config.copy_and_resolve_references()
    if name != 'simple' and 'simple' in variants:
      ec.reference_run = paths.join(workdir, 'simple')
    report = protocol.evaluate_run(paths.join(workdir, name), ec, data_dir=data_dir)
    tables.write_report(
        report, paths.join(workdir, name, 'eval', ec.name), plots.privacy_accuracy_plots
    )
    reports.append(report)
    timings[f'eval_{name}'] = time.perf_counter() - t0
  text = tables.compare_markdown(reports, list(variants))
  plots.privacy_accuracy_plots(reports, workdir, names=list(variants))
  timing = ', '.join(f'{k} {v:.0f} s' for k, v in timings.items())
  text += f'\nWall time: {sum(timings.values()):.0f} s ({timing}).\n'
  paths.as_path(paths.join(workdir, 'compare.md')).write_text(text)
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  f = flags.FLAGS
  path, args, overrides = config_request(f)
  text = cli.run_or_exit(
      lambda: run_pipeline(
          f.workdir, path, args, f.eval_config, f.variants, f.data_dir, overrides=overrides
      )
  )
  print(text)
  print(
      f'reports: {f.workdir}/<run>/eval/{f.eval_config.name}/report.md; '
      f'comparison: {f.workdir}/compare.md; plot: {f.workdir}/privacy_accuracy.png'
  )


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
