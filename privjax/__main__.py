"""`python -m privjax <command> [flags]`: the `privjax` command (privjax.commands)."""

from privjax import commands

if __name__ == '__main__':
  commands.main()
