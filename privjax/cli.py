"""Shared plumbing of the command-line entry points: one-line errors and exit codes.

Known failures (every `privjax.errors.PrivjaxError`: bad config, weight file, data, workdir,
checkpoint, NaN, a failed process, an impossible evaluation or defence request; a missing file; and
an operating-system error with an errno, such as an unwritable directory or a full disk) print
`error: <message>` on one line and exit with status 2, from inside a command's `main` as from its
flags (a config file that is missing, has a syntax error or an unknown `--config.key`); anything
else is a bug and keeps its traceback.
Must not import jax at module level, so `--help` stays fast.
"""

from __future__ import annotations

import sys

from absl import app

from privjax import errors

# The errors privjax raises on purpose (all of them, by their common base), and a missing file.
KNOWN_ERRORS = (errors.PrivjaxError, FileNotFoundError)


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


def run_or_exit(fn):
  try:
    return fn()
  except Exception as e:
    message = _known_message(e)
    if message is None:
      raise
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def summary_line(result: dict) -> str:
  keys = ('step', 'test_accuracy', 'train_loss', 'train_images_per_sec')
  return '  '.join(
      f'{k}={result[k]:.4g}' if isinstance(result[k], float) else f'{k}={result[k]}'
      for k in keys
      if k in result
  )


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
  from absl import flags

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


def _parse_flags(argv):
  """Flag parsing with config-file errors (missing file, syntax error, bad key, bad value, bad
  override) on one line."""
  from absl import flags

  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    message = _unknown_key_message(e, argv)
    if message is None:
      # ml_collections embeds the config file's traceback in the message: keep what it says about
      # the flag (first line) and the exception itself (last line).
      lines = [l for l in str(e).strip().splitlines() if l.strip()]
      message = lines[0] if len(lines) == 1 else f'{lines[0].rstrip(": ")}: {lines[-1].strip()}'
    print(f'error: {one_line(message)}', file=sys.stderr)
    sys.exit(2)
  except Exception as e:  # running the config file failed: its syntax, an import, get_config
    message = _known_message(e) or _config_file_message(e)
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def run_app(main):
  """absl's app.run with one-line flag errors.

  Library INFO logs (orbax writes several lines per checkpoint) are hidden unless `-v 0` or higher
  is given; the progress bar and our own summaries go to stdout.
  """
  if not any(a.startswith(('-v', '--verbosity')) for a in sys.argv[1:]):
    sys.argv.append('--verbosity=-1')
  # Known failures raised outside the command's own run_or_exit (writing its report) are one line.
  app.run(lambda argv: run_or_exit(lambda: main(argv)), flags_parser=_parse_flags)
