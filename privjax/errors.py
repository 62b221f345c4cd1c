"""Every error privjax raises on purpose: a failure the user can fix, with a one-line message.

What lives here: `PrivjaxError`, the base of them all, and one subclass per kind of failure (a
config value, a pretrained weight file, a data set, a workdir or checkpoint, a diverged run,
another process of a multi-host job, an evaluation request, a defence request). The commands
(privjax.commands) print any `PrivjaxError` as `error: <message>` and exit with status 2; any other
exception is a bug and keeps its traceback. `Interrupted` is apart: a Ctrl-C that a training or an
evaluation stopped at, with where it stopped; the commands print its message and exit with 130. A new kind of error belongs here, so the command line
knows it. Import them from here: no other module re-exports them.

Each class also has a built-in base (ValueError, RuntimeError), so `except ValueError` catches it.

Must import nothing but the standard library (no jax, nothing from privjax): the command-line
error handler and config validation import it before anything heavy is loaded.
"""


class PrivjaxError(Exception):
  """A failure the user can fix; the message says how, in one line."""


class ConfigError(PrivjaxError, ValueError):
  """A config value that cannot work; the message names the key and the valid choices."""


class PretrainedError(ConfigError):
  """A weight file that cannot be read or does not fit the model; the message says why."""


class DataError(PrivjaxError, ValueError):
  """A data set, split or label that cannot be used; the message says what exists instead."""


class RunError(PrivjaxError, ValueError):
  """A workdir or checkpoint that cannot be used as asked; nothing has been written."""


class TrainingError(PrivjaxError, RuntimeError):
  """Training cannot go on (for example a NaN loss); the message says at which step."""


class DistributedError(PrivjaxError, RuntimeError):
  """Another process failed; the message says which step it failed at."""


class EvalError(PrivjaxError, ValueError):
  """An evaluation request that cannot be met; the message says what is available."""


class DefenceError(PrivjaxError, ValueError):
  """An unknown or impossible defence request; the message lists what exists."""


class Interrupted(KeyboardInterrupt):
  """Ctrl-C stopped a training or an evaluation; the message says where and that a rerun resumes.

  A KeyboardInterrupt (not a PrivjaxError), so that no `except Exception` on the way out stops it.
  """
