"""What every command shares: flag parsing, `--help`, one-line errors and exit codes.

`run_command(name)` runs one command module of privjax.commands: it defines the module's flags,
answers `--help` (the module's docstring and its flags; status 0), parses the command line and calls
the module's `main`.

Exit status 2 and one `error: <message>` line for:
  * a usage mistake (a stray positional argument, a missing required flag, an unknown flag); the
    line ends with a pointer to `--help`;
  * a known failure: every `privjax.errors.PrivjaxError` (bad config, weight file, data, workdir,
    checkpoint, NaN, a failed process, an impossible evaluation or defence request), a missing
    file, an operating-system error with an errno (an unwritable directory, a full disk); from
    inside a command's `main` as from its flags (a config file that is missing, has a syntax error
    or an unknown `--config.key`, a directory flag given empty: `--workdir=`).
Exit status 130 and one line for Ctrl-C: where a training or an evaluation stopped
(`privjax.errors.Interrupted`) and that a rerun resumes.
Anything else is a bug and keeps its traceback. A line printed while progress bars are open goes
below them: the bars are closed first, each ending its own line.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import textwrap

from absl import app, flags

from privjax import config_args, errors

# The errors privjax raises on purpose (all of them, by their common base), and a missing file.
KNOWN_ERRORS = (errors.PrivjaxError, FileNotFoundError)
# Flags that name a directory: given empty (`--workdir=`), they would mean the current one.
DIRECTORY_FLAGS = ('workdir', 'out', 'data_dir')
HELP_FLAGS = ('-h', '-?', '--help', '--helpshort')
WIDTH = 100


def one_line(text: str) -> str:
  return ' '.join(l.strip() for l in str(text).splitlines() if l.strip())


def _known_message(e: BaseException) -> str | None:
  """The one-line message of a known failure, None for a bug."""
  if isinstance(e, KNOWN_ERRORS):
    return one_line(e)
  if isinstance(e, OSError) and e.errno is not None:  # permissions, a full disk, a file for a dir
    where = f': {e.filename}' if e.filename else ''
    return one_line(f'{e.strerror or e}{where}')
  return None


def _close_progress_bars() -> None:
  """Closes the tqdm bars still open (an exception left them), so that the next line printed
  starts a line of its own instead of landing on a bar's."""
  tqdm = sys.modules.get('tqdm')
  for bar in list(getattr(getattr(tqdm, 'tqdm', None), '_instances', ())):
    bar.close()


def _fail(message: str, status: int = 2):
  _close_progress_bars()
  print(f'error: {message}' if status == 2 else message, file=sys.stderr, flush=True)
  sys.exit(status)


def interrupted(e: KeyboardInterrupt):
  """Ctrl-C: one line (where it stopped, when privjax knows) and exit status 130."""
  message = one_line(e) if isinstance(e, errors.Interrupted) else 'interrupted'
  _fail(message, 130)


def print_help(text: str):
  """Prints `text` and exits 0, also when the reader stops early (`privjax train --help | head`)."""
  try:
    print(text, flush=True)
  except BrokenPipeError:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
  sys.exit(0)


def run_or_exit(fn):
  """`fn()`, with a known failure as one `error:` line and exit status 2."""
  try:
    return fn()
  except Exception as e:
    message = _known_message(e)
    if message is None:
      raise
    _fail(message)


def summary_line(result: dict) -> str:
  keys = ('step', 'test_accuracy', 'train_loss', 'train_images_per_sec')
  return '  '.join(
      f'{k}={result[k]:.4g}' if isinstance(result[k], float) else f'{k}={result[k]}'
      for k in keys
      if k in result
  )


def config_request(flag_name: str = 'config') -> tuple[str, str, dict]:
  """(file, arguments after the colon, {'a.b': value} overrides) of a config-file flag."""
  from ml_collections import config_flags

  flag = flags.FLAGS[flag_name]
  path, _, args = config_flags.get_config_filename(flag).partition(':')
  return path, args, dict(config_flags.get_override_values(flag))


def _override_of(key: str, argv) -> tuple[str, list[str]] | tuple[None, None]:
  """(the `--NAME.a.b=value` argument of `argv` whose dotted key has `key`, its key up to `key`)."""
  for arg in argv[1:]:
    name = arg.split('=', 1)[0]
    if arg.startswith('--') and '.' in name:
      path = name.lstrip('-').split('.')[1:]
      if key in path:
        return arg, path[: path.index(key) + 1]
  return None, None


def _valid_keys(flag_name: str, path: list[str], argv) -> list[str]:
  """The keys of the config node at `path` of config flag `flag_name` (re-read from `argv`);
  [] when that cannot be done."""
  try:
    spec = None
    for i, arg in enumerate(argv[1:], 1):
      if arg.startswith(f'--{flag_name}='):
        spec = arg.split('=', 1)[1]
      elif arg == f'--{flag_name}' and i + 1 < len(argv):
        spec = argv[i + 1]
    node = flags.FLAGS[flag_name].parser.parse(spec) if spec else flags.FLAGS[flag_name].default
    for key in path:
      node = node[key]
    return sorted(node.keys())
  except Exception:  # only a hint: the error message stands without it
    return []


def _unknown_key_message(e: BaseException, argv) -> str | None:
  """ml_collections' KeyError for `--config.foo=1` (bare or inside an AttributeError) as one line
  that names the override, the dotted key and what is valid; None for other errors."""
  inner = e.args[0] if isinstance(e, AttributeError) and e.args else e
  if not isinstance(inner, KeyError) or not inner.args:
    return None
  lines = [l.strip() for l in str(inner.args[0]).splitlines() if l.strip()]
  if not lines:
    return None
  key = lines[0].strip('\'"')
  arg, path = _override_of(key, argv)
  if arg is None:
    return f'unknown config key {key!r}' + (f'; {" ".join(lines[1:])}' if lines[1:] else '')
  flag_name = arg.split('=', 1)[0].lstrip('-').split('.')[0]
  message = f'flag {arg}: the config has no key {".".join(path)}'
  if lines[1:]:
    return f'{message}; {" ".join(lines[1:])}'
  valid = _valid_keys(flag_name, path[:-1], argv)
  if valid:
    where = f' of {flag_name}.{".".join(path[:-1])}' if path[:-1] else ''
    message += f'; valid keys{where}: {", ".join(valid)}'
  return message


def _config_file_message(e: BaseException) -> str | None:
  """A config file that cannot be run (a syntax error, an exception in get_config) as one line:
  the file, the line and the error."""
  if isinstance(e, SyntaxError):
    return f'{e.filename}, line {e.lineno}: syntax error: {e.msg}'
  import traceback

  frames = [f for f in traceback.extract_tb(e.__traceback__) if 'ml_collections' not in f.filename]
  where = f'{frames[-1].filename}, line {frames[-1].lineno}: ' if frames else ''
  return one_line(f'{where}{type(e).__name__}: {e}')


def _flag_list(names) -> str:
  names = [f'--{n}' for n in names]
  return names[0] if len(names) == 1 else f'{", ".join(names[:-1])} and {names[-1]}'


def _flag_default(flag) -> str | None:
  if flag.flag_type() == 'config object':
    from ml_collections import config_flags

    return config_flags.get_config_filename(flag) if flag.default is not None else None
  if flag.default is None or flag.default == []:
    return None
  return flag.default_as_str.strip("'")


def help_text(module) -> str:
  """What `--help` prints: the command's docstring, then its flags with their defaults."""
  lines = [inspect.cleandoc(module.__doc__), '', 'flags:']
  required = getattr(module, 'REQUIRED', ())
  for flag in sorted(flags.FLAGS.get_key_flags_for_module(module.__name__), key=lambda f: f.name):
    text = flag.help or ''
    default = _flag_default(flag)
    if flag.name in required:
      text += ' (required)'
    elif default is not None:
      text += f' (default: {default})'
    lines.append(f'  --{flag.name}')
    lines += textwrap.wrap(text, WIDTH, initial_indent=' ' * 6, subsequent_indent=' ' * 6)
  return '\n'.join(lines)


def _parser(module, prog: str):
  """The flags parser of `run_command`: help, usage mistakes and config-file errors."""
  pointer = f'see {prog} --help'

  def parse(argv):
    options = argv[1 : argv.index('--')] if '--' in argv else argv[1:]
    if any(a in HELP_FLAGS for a in options):
      print_help(help_text(module))
    try:
      rest = flags.FLAGS(argv)
    except flags.UnrecognizedFlagError as e:
      _fail(f'{one_line(e)}; {pointer}')
    except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
      message = _unknown_key_message(e, argv)
      if message is None:
        # ml_collections embeds the config file's traceback in the message: keep what it says
        # about the flag (first line) and the exception itself (last line).
        lines = [l for l in str(e).strip().splitlines() if l.strip()]
        message = lines[0] if len(lines) == 1 else f'{lines[0].rstrip(": ")}: {lines[-1].strip()}'
      _fail(one_line(message))
    except Exception as e:  # running the config file failed: its syntax, an import, get_config
      _fail(_known_message(e) or _config_file_message(e))
    if len(rest) > 1 and not getattr(module, 'TAKES_ARGUMENTS', False):
      _fail(f'unexpected argument{"s" * (len(rest) > 2)} {" ".join(rest[1:])}; {pointer}')
    empty = [n for n in DIRECTORY_FLAGS if n in flags.FLAGS and flags.FLAGS[n].value == '']
    if empty:
      _fail(f'--{empty[0]} is empty: give a directory; {pointer}')
    missing = [n for n in getattr(module, 'REQUIRED', ()) if flags.FLAGS[n].value is None]
    if missing:
      _fail(f'{_flag_list(missing)} {"is" if len(missing) == 1 else "are"} required; {pointer}')
    return rest

  return parse


def _prog() -> str:
  name = os.path.basename(sys.argv[0])
  return f'python {name}' if name.endswith('.py') else name


def run_command(name: str, prog: str | None = None) -> None:
  """Runs the command module `name` (privjax.commands.NAME) on `sys.argv`.

  Library INFO logs (orbax writes several lines per checkpoint) are hidden unless `-v 0` or higher
  is given; the progress bar and our own summaries go to stdout.
  """
  module = importlib.import_module(name)
  logging.getLogger('absl').setLevel(logging.WARNING)
  module.define_flags()
  config_args.find_packaged_configs()  # flags defined with ml_collections' own function too
  if not any(a.startswith(('-v', '--verbosity')) for a in sys.argv[1:]):
    sys.argv.append('--verbosity=-1')
  prog = prog or _prog()

  def main(argv):
    try:
      # Known failures raised outside the command's own run_or_exit are one line too.
      return run_or_exit(lambda: module.main(argv))
    except app.UsageError as e:
      _fail(f'{one_line(e)}; see {prog} --help')
    except KeyboardInterrupt as e:
      interrupted(e)

  app.run(main, flags_parser=_parser(module, prog))
