r"""Trains a split model: `python train.py --config configs/default.py[:args] --workdir DIR`.

Override any config value with `--config.key=value` (for example `--config.model.cut=pool4`).
A rerun with the same workdir resumes from its latest checkpoint; a workdir that holds another
experiment is refused and left untouched.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from privjax import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file[:args].', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from privjax.train import loop  # after flag parsing, so --help is fast

  result = cli.run_or_exit(lambda: loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value))
  print(cli.summary_line(result))


if __name__ == '__main__':
  logging.getLogger('absl').setLevel(logging.WARNING)
  cli.run_app(main)
