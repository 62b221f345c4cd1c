"""Attacker families behind one call signature, and picking the strongest.

``ATTACKERS[name](x, y, *, seed, module_factory=None, **overrides)`` fits one
family; ``run_attack`` fits, times and scores it on held-out data. The
privacy of a feature representation is judged by the *strongest* attacker,
since a defence only counts if no attacker we tried gets through.

Must not import ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import time
from typing import Callable

from privjax.attacks.common import AttackResult, evaluate_attacker
from privjax.attacks.linear import fit_linear
from privjax.attacks.mlp import fit_mlp
from privjax.attacks.transfer import ModuleFactory, fit_module


def _linear(x, y, *, seed: int = 0, module_factory: ModuleFactory | None = None, **kw):
  return fit_linear(x, y, seed=seed, **kw)


def _mlp(x, y, *, seed: int = 0, module_factory: ModuleFactory | None = None, **kw):
  return fit_mlp(x, y, seed=seed, **kw)


def _transfer(x, y, *, seed: int = 0, module_factory: ModuleFactory | None = None, **kw):
  if module_factory is None:
    raise ValueError(
        "the 'transfer' attacker re-trains the layers after the cut and "
        "needs module_factory(num_classes, rngs) -> nnx.Module"
    )
  return fit_module(module_factory, x, y, seed=seed, **kw)


ATTACKERS: dict[str, Callable] = {
    "linear": _linear,
    "mlp": _mlp,
    "transfer": _transfer,
}


def run_attack(
    family: str,
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    seed: int = 0,
    module_factory: ModuleFactory | None = None,
    **overrides,
) -> AttackResult:
  """Fit ``family`` on the attacker's data and score it on the test data."""
  if family not in ATTACKERS:
    raise KeyError(f"unknown attacker family {family!r}; known: {sorted(ATTACKERS)}")
  start = time.perf_counter()
  attacker = ATTACKERS[family](
      x_train, y_train, seed=seed, module_factory=module_factory, **overrides
  )
  seconds = time.perf_counter() - start
  scores = evaluate_attacker(attacker, x_test, y_test)
  extra = {k: v for k, v in getattr(attacker, "info", {}).items() if k != "history"}
  return AttackResult(
      family=family,
      top1=scores["top1"],
      top5=scores["top5"],
      num_classes=attacker.class_map.num_classes,
      train_seconds=seconds,
      extra=extra,
  )


def strongest(results: dict[str, AttackResult]) -> tuple[str, AttackResult]:
  """The (name, result) with the highest top-1; ties go to the higher top-5."""
  if not results:
    raise ValueError("no attack results to compare")
  name = max(results, key=lambda k: (results[k].top1, results[k].top5))
  return name, results[name]
