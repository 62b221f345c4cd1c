"""The evaluation's error type, importable without jax (for the command-line error handler)."""


class EvalError(ValueError):
  """An evaluation request that cannot be met; the message says what is available."""
