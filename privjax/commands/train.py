r"""Train a split model (resuming a run that was stopped).

usage: privjax train --config FILE[:ARGS] --workdir DIR [--config.KEY=VALUE ...]
       (also privjax-train or python train.py, with the same flags)

Trains the experiment that the config file describes (for example configs/default.py:tiny, or
configs/default.py:siamese) in DIR: checkpoints, metrics and a final evaluation of the primary task.
Override any config value with --config.KEY=VALUE (for example --config.model.cut=pool4).

Running the same command again resumes from the latest checkpoint. A DIR that holds another
experiment, or files that are not a privjax run, is refused and left untouched. Outside a clone,
configs/... names the configs installed with privjax.
"""

from __future__ import annotations

from absl import flags

from privjax import config_args
from privjax.commands import _cli

REQUIRED = ('config', 'workdir')


def define_flags():
  config_args.DEFINE_config_file('config', None, 'Experiment config file[:args].')
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')


def main(argv):
  from privjax.train import loop  # after flag parsing, so --help is fast

  f = flags.FLAGS
  result = _cli.run_or_exit(lambda: loop.train_and_evaluate(f.config, f.workdir))
  print(_cli.summary_line(result))


def run():
  """The privjax-train console script."""
  _cli.run_command(__name__)
