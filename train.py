r"""Trains a split model: `python train.py --config configs/default.py[:args] --workdir DIR`.

The same command as `privjax train` (privjax/commands/train.py; `python train.py --help` lists its
flags).
"""

from privjax.commands import train

if __name__ == '__main__':
  train.run()
