r"""Evaluate a trained run by attacking its frozen cut features, or compare evaluated runs.

usage: privjax eval --workdir RUN [--config FILE[:ARGS]] [--step N] [--config.KEY=VALUE ...]
       privjax eval --compare RUN_A RUN_B ... [--out FILE]
       (also privjax-eval or python eval.py, with the same flags)

The first form evaluates RUN with the evaluation config (configs/eval/default.py by default; its
`:fast` and `:tiny` arguments run fewer attackers) at checkpoint step S (--step, default the
latest) and writes RUN/eval/<name>/step_<S>/: report.json, report.md, privacy_accuracy.png,
reconstruction.png (the decoder), reconstructions.png (originals, decoder, inversion) and
tensorboard/ (results per setting); the evaluations of other steps stay beside it. A run whose
training is in progress is refused unless --step names a checkpoint that training keeps. The
second form puts evaluated runs (their newest step's report) or report.json files side by side in
one table, compare.md.

Outside a clone, configs/... names the configs installed with privjax.
"""

from __future__ import annotations

from absl import app, flags

from privjax import config_args, paths
from privjax.commands import _cli

DEFAULT_CONFIG = 'configs/eval/default.py'
TAKES_ARGUMENTS = True  # the runs after --compare


def define_flags():
  config_args.DEFINE_config_file('config', DEFAULT_CONFIG, 'Evaluation config file[:args].')
  flags.DEFINE_string('workdir', None, 'Run directory to evaluate.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_string('data_dir', None, "Data directory, instead of the run's own.")
  flags.DEFINE_multi_string(
      'compare',
      None,
      'Runs (or report.json files) to compare; repeat the flag or list them after it.',
  )
  flags.DEFINE_string(
      'out', None, 'Where --compare writes compare.md (default: RUN_A/eval/compare.md).'
  )


def main(argv):
  from privjax import api
  from privjax.report import tables

  f = flags.FLAGS
  if f.compare:
    runs = list(f.compare) + list(argv[1:])
    reports = _cli.run_or_exit(lambda: [api.load_report(r) for r in runs])
    text = tables.compare_markdown(reports, [paths.as_path(r).name for r in runs])
    out = f.out or paths.join(runs[0], 'eval', 'compare.md')
    paths.as_path(out).parent.mkdir(parents=True, exist_ok=True)  # local or a URI
    paths.as_path(out).write_text(text)
    print(text)
    print(f'written to {out}')
    return
  if not f.workdir:
    raise app.UsageError('give --workdir RUN (or --compare RUN_A RUN_B ...)')
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {" ".join(argv[1:])} (runs go after --compare)')
  from privjax.evaluate import protocol

  report, out_dir = _cli.run_or_exit(
      lambda: protocol.evaluate(f.workdir, f.config, step=f.step, data_dir=f.data_dir)
  )
  print(tables.markdown(report))
  print(f'report files: {out_dir}')


def run():
  """The privjax-eval console script."""
  _cli.run_command(__name__)
