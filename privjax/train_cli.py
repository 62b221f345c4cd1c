r"""The training command: `privjax-train` or `python train.py`, with the same flags.

  privjax-train --config configs/default.py[:args] --workdir DIR [--config.key=value ...]

Override any config value with `--config.key=value` (for example `--config.model.cut=pool4`).
A rerun with the same workdir resumes from its latest checkpoint; a workdir that holds another
experiment is refused and left untouched. Outside a clone, `configs/...` names the configs installed
with the package (privjax.config_args).
"""

from __future__ import annotations

from absl import app, flags

from privjax import cli, config_args


def define_flags():
  """The command's flags; defined only when run as a program, so importing this module in a process
  that has other entry points' flags (tests, notebooks) cannot clash with them."""
  config_args.DEFINE_config_file('config', None, 'Experiment config file[:args].')
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
  flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from privjax.train import loop  # after flag parsing, so --help is fast

  f = flags.FLAGS
  result = cli.run_or_exit(lambda: loop.train_and_evaluate(f.config, f.workdir))
  print(cli.summary_line(result))
