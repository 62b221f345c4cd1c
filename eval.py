r"""Privacy evaluation of trained runs on their frozen cut features.

  python eval.py --workdir RUN [--config configs/eval/default.py[:args]] [--step N]
  python eval.py --compare RUN_A RUN_B ...      # side-by-side table of evaluated runs

Writes RUN/eval/<name>/report.json, report.md, privacy_accuracy.png and reconstruction.png.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from privjax import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'configs/eval/default.py', 'Evaluation config file[:args].', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory to evaluate.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
_DATA_DIR = flags.DEFINE_string('data_dir', None, "Override the run's TFDS data dir.")
_COMPARE = flags.DEFINE_multi_string(
    'compare',
    None,
    'Runs (or report.json files) to compare; ' 'repeat the flag or list them after it.',
)
_OUT = flags.DEFINE_string(
    'out', None, 'Where --compare writes compare.md (default: beside the ' 'first run).'
)


def main(argv):
  from privjax.report import tables

  if _COMPARE.value:
    runs = list(_COMPARE.value) + list(argv[1:])
    reports = cli.run_or_exit(lambda: [tables.load_report(r) for r in runs])
    text = tables.compare_markdown(reports, [os.path.basename(os.path.normpath(r)) for r in runs])
    out = _OUT.value or os.path.join(runs[0], 'eval', 'compare.md')
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    with open(out, 'w') as f:
      f.write(text)
    print(text)
    print(f'written to {out}')
    return
  if not _WORKDIR.value:
    raise app.UsageError('give --workdir RUN (or --compare RUN_A RUN_B ...)')
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from privjax.evaluate import protocol
  from privjax.report import plots

  report = cli.run_or_exit(
      lambda: protocol.evaluate_run(
          _WORKDIR.value, _CONFIG.value, step=_STEP.value, data_dir=_DATA_DIR.value
      )
  )
  out_dir = os.path.join(_WORKDIR.value, 'eval', _CONFIG.value.name)
  paths = tables.write_report(report, out_dir, plots.privacy_accuracy_plots)
  print(tables.markdown(report))
  print('\n'.join(f'{k}: {v}' for k, v in paths.items()))


if __name__ == '__main__':
  cli.run_app(main)
