r"""Trains a split model: `python train.py --config configs/default.py[:args] --workdir DIR`.

The command lives in privjax/train_cli.py (installed as `privjax-train`, same flags). Override any
config value with `--config.key=value` (for example `--config.model.cut=pool4`). A rerun with the
same workdir resumes from its latest checkpoint; a workdir that holds another experiment is refused
and left untouched.
"""

from privjax import console_cli

if __name__ == '__main__':
  console_cli.train()
