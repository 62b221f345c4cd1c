r"""The console scripts that `pip install` puts on the PATH ([project.scripts] in pyproject.toml).

  privjax-train      train.py                    privjax-frontier   python -m privjax.frontier
  privjax-eval       eval.py                     privjax-cost       python -m privjax.cost
  privjax-reproduce  python -m privjax.reproduce privjax-export     python -m privjax.export
  privjax-sweep      python -m privjax.sweep

Each takes the flags of the command beside it (`--helpfull` lists them) and runs its `main` under
`cli.run_app` (one-line errors). Every config-file flag finds the configs installed with the package:
`--config configs/default.py:tiny` names the installed file when the working directory has no
configs/default.py (privjax.config_args.resolve).
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from privjax import cli, config_args


def _run(main, *modules):
  """`main` under cli.run_app, after the flags of `modules` became the script's own (what --help
  lists) and every config flag finds the packaged configs."""
  config_args.find_packaged_configs()  # flags defined with ml_collections' own function too
  script = sys.modules['__main__']
  if not getattr(script, '__doc__', None):
    script.__doc__ = sys.modules[modules[0]].__doc__  # what --help prints above the flags
  for module in modules:
    for flag in flags.FLAGS.get_key_flags_for_module(module):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  cli.run_app(main)


def train():
  from privjax import train_cli

  logging.getLogger('absl').setLevel(logging.WARNING)
  train_cli.define_flags()
  _run(train_cli.main, 'privjax.train_cli')


def evaluate():
  from privjax import eval_cli

  eval_cli.define_flags()
  _run(eval_cli.main, 'privjax.eval_cli')


def reproduce():
  from privjax import reproduce as command

  command.define_flags()
  _run(command.main, 'privjax.reproduce')


def sweep():
  from privjax import sweep as command

  command.define_flags()
  _run(command.main, 'privjax.sweep', 'privjax.reproduce')


def frontier():
  from privjax import frontier as command

  command.define_flags()
  _run(command.main, 'privjax.frontier')


def cost():
  from privjax import cost_cli

  cost_cli.define_flags()
  _run(cost_cli.main, 'privjax.cost_cli')


def export():
  from privjax import export as command

  command.define_flags()
  _run(command.main, 'privjax.export')
