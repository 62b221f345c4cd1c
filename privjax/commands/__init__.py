"""The command line: `privjax <command> [flags]` (or `python -m privjax <command>`), and the
`privjax-<command>` console scripts with the same flags.

One module per command (`COMMANDS`). A command module has a docstring written for users (what
`--help` prints above the flags; its first line is the command's summary in `privjax --help`),
`define_flags()` (called only when the command runs, so importing a command module defines no flag),
`REQUIRED` (its required flags), `TAKES_ARGUMENTS` (whether positional arguments are allowed),
`main(argv)` and `run()` (its console script). `_cli` is the plumbing they share. The work itself is
the library's: a command reads its flags, calls the library and prints.

Command modules must not import jax at module level, so `--help` answers at once.
"""

from __future__ import annotations

import importlib
import inspect
import sys

COMMANDS = ('train', 'eval', 'reproduce', 'sweep', 'frontier', 'cost', 'export')
PROG = 'privjax'


def summary(name: str) -> str:
  """The first line of command `name`'s docstring."""
  module = importlib.import_module(f'{__name__}.{name}')
  return inspect.cleandoc(module.__doc__).splitlines()[0]


def overview() -> str:
  """What `privjax --help` prints."""
  width = max(map(len, COMMANDS))
  lines = [
      f'usage: {PROG} <command> [flags]   (or python -m privjax <command> [flags])',
      '',
      'commands:',
      *(f'  {name:<{width}}  {summary(name)}' for name in COMMANDS),
      '',
      f'`{PROG} <command> --help` describes a command and its flags.',
  ]
  return '\n'.join(lines)


def main(argv=None) -> None:
  """`privjax <command> [flags]`: runs the command with the rest of the command line."""
  from privjax.commands import _cli

  argv = list(sys.argv if argv is None else argv)
  if len(argv) > 1 and argv[1] in (*_cli.HELP_FLAGS, 'help'):
    _cli.print_help(overview())
  if len(argv) < 2 or argv[1] not in COMMANDS:
    given = f'unknown command {argv[1]!r}' if len(argv) > 1 else 'no command given'
    print(
        f'error: {given}; choose one of: {", ".join(COMMANDS)}; see {PROG} --help',
        file=sys.stderr,
    )
    sys.exit(2)
  prog = f'{PROG} {argv[1]}'
  sys.argv = [prog, *argv[2:]]  # ml_collections reads --config.key=value overrides from sys.argv
  _cli.run_command(f'{__name__}.{argv[1]}', prog)
