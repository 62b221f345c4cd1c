"""Shared plumbing of the command-line entry points: one-line errors and exit codes.

Known failures (every `privjax.errors.PrivjaxError`: bad config, weight file, data, workdir,
checkpoint, NaN, a failed process, an impossible evaluation or defence request; and a missing file)
print `error: <message>` on one line and exit with status 2; anything else is a bug and keeps its
traceback.
Must not import jax at module level, so `--help` stays fast.
"""

from __future__ import annotations

import sys

from absl import app

from privjax import errors

# The errors privjax raises on purpose (all of them, by their common base), and a missing file.
KNOWN_ERRORS = (errors.PrivjaxError, FileNotFoundError)


def run_or_exit(fn):
  try:
    return fn()
  except KNOWN_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def summary_line(result: dict) -> str:
  keys = ('step', 'test_accuracy', 'train_loss', 'train_images_per_sec')
  return '  '.join(
      f'{k}={result[k]:.4g}' if isinstance(result[k], float) else f'{k}={result[k]}'
      for k in keys
      if k in result
  )


def _parse_flags(argv):
  """Flag parsing with config-file errors (bad key, bad value, bad override) on one line."""
  from absl import flags

  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    # ml_collections embeds the config file's traceback in the message: keep what it says about
    # the flag (first line) and the exception itself (last line).
    lines = [l for l in str(e).strip().splitlines() if l.strip()]
    message = lines[0] if len(lines) == 1 else f'{lines[0].rstrip(": ")}: {lines[-1].strip()}'
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def run_app(main):
  """absl's app.run with one-line flag errors.

  Library INFO logs (orbax writes several lines per checkpoint) are hidden unless `-v 0` or higher
  is given; the progress bar and our own summaries go to stdout.
  """
  if not any(a.startswith(('-v', '--verbosity')) for a in sys.argv[1:]):
    sys.argv.append('--verbosity=-1')
  app.run(main, flags_parser=_parse_flags)
