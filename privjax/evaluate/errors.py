"""The evaluation's error type, `EvalError`, under its old name; it lives in `privjax.errors`.

Must not import jax (the command-line error handler imports it).
"""

from privjax.errors import EvalError as EvalError
