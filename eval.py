r"""Evaluates trained runs: `python eval.py --workdir RUN [--config configs/eval/default.py]`.

The same command as `privjax eval` (privjax/commands/eval.py; `python eval.py --help` lists its
flags).
"""

from privjax.commands import eval as command

if __name__ == '__main__':
  command.run()
