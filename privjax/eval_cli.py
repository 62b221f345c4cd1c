r"""The evaluation command: `privjax-eval` or `python eval.py`, with the same flags.

  privjax-eval --workdir RUN [--config configs/eval/default.py[:args]] [--step N]
  privjax-eval --compare RUN_A RUN_B ...      # side-by-side table of evaluated runs

Writes RUN/eval/<name>/report.json, report.md, privacy_accuracy.png, reconstruction.png (the
decoder), reconstructions.png (originals, decoder, rMLE) and tensorboard/ (results per setting).
Outside a clone, `configs/...` names the configs installed with the package (privjax.config_args).
"""

from __future__ import annotations

from absl import app, flags

from privjax import cli, config_args, paths

DEFAULT_CONFIG = 'configs/eval/default.py'


def define_flags():
  """The command's flags; defined only when run as a program, so importing this module in a process
  that has other entry points' flags (tests, notebooks) cannot clash with them."""
  config_args.DEFINE_config_file('config', DEFAULT_CONFIG, 'Evaluation config file[:args].')
  flags.DEFINE_string('workdir', None, 'Run directory to evaluate.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
  flags.DEFINE_string('data_dir', None, "Override the run's TFDS data dir.")
  flags.DEFINE_multi_string(
      'compare',
      None,
      'Runs (or report.json files) to compare; repeat the flag or list them after it.',
  )
  flags.DEFINE_string(
      'out', None, 'Where --compare writes compare.md (default: beside the first run).'
  )


def main(argv):
  from privjax.report import tables

  f = flags.FLAGS
  if f.compare:
    runs = list(f.compare) + list(argv[1:])
    reports = cli.run_or_exit(lambda: [tables.load_report(r) for r in runs])
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
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from privjax.evaluate import protocol
  from privjax.report import plots

  report = cli.run_or_exit(
      lambda: protocol.evaluate_run(f.workdir, f.config, step=f.step, data_dir=f.data_dir)
  )
  out_dir = paths.join(f.workdir, 'eval', f.config.name)
  written = tables.write_report(report, out_dir, plots.privacy_accuracy_plots)
  print(tables.markdown(report))
  print('\n'.join(f'{k}: {v}' for k, v in written.items()))
