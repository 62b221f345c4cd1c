"""Attacker families behind one call signature, picking the strongest, and the report record.

``ATTACKERS[name](x, y, *, seed, module_factory=None, **overrides)`` fits one
family; ``fit`` fits and times it, once per process for identical data and settings;
``run_attack`` fits and scores it on held-out data. The
privacy of a feature representation is judged by the *strongest* attacker,
since a defence only counts if no attacker we tried gets through; the
``pca_*`` families reduce dimensions themselves first (``privjax.attacks.pca``),
so the strongest is taken over attackers with and without their own
preprocessing. ``summarize`` turns the families' results on one secret into
the report record, with the chance and majority-class baselines beside them.

Overrides are the family's keyword arguments (``fit_linear``, ``fit_mlp``,
``fit_module``, ``fit_pca_attacker``); e.g. ``{'linear': {'max_iter': 100}}``
bounds the cost of each L-BFGS run of the linear attacker.

Must not import ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Callable

import numpy as np

from privjax.attacks.common import AttackResult, Kept, evaluate_attacker
from privjax.attacks.linear import fit_linear
from privjax.attacks.mlp import fit_mlp
from privjax.attacks.pca import fit_pca_attacker
from privjax.attacks.transfer import ModuleFactory, fit_module
from privjax.metrics import classification


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


def _pca_linear(x, y, *, seed: int = 0, module_factory: ModuleFactory | None = None, **kw):
  return fit_pca_attacker(x, y, base="linear", seed=seed, **kw)


def _pca_mlp(x, y, *, seed: int = 0, module_factory: ModuleFactory | None = None, **kw):
  return fit_pca_attacker(x, y, base="mlp", seed=seed, **kw)


# Keys of an attacker's ``info`` that stay on the attacker and out of ``AttackResult.extra``: per-step
# training curves (``transfer``'s ``history``), long lists a report of many fits should not carry.
# One rule for every family, in-memory and streaming (``privjax.attacks.streaming``).
DROPPED_INFO = ("history",)


def attack_result(family: str, attacker, scores: dict, seconds: float) -> AttackResult:
  """The ``AttackResult`` of a fitted ``attacker`` and its test ``scores``
  (``common.evaluate_attacker``'s record); ``run_attack`` and ``streaming.run_streaming_attack``
  both build theirs here."""
  extra = {k: v for k, v in getattr(attacker, "info", {}).items() if k not in DROPPED_INFO}
  return AttackResult(
      family=family,
      top1=scores["top1"],
      top5=scores["top5"],
      num_classes=attacker.class_map.num_classes,
      train_seconds=seconds,
      extra=extra,
      top1_se=scores["top1_se"],
      top5_se=scores["top5_se"],
      num_test=scores["num_test"],
      log_rank=scores["log_rank"],
  )


ATTACKERS: dict[str, Callable] = {
    "linear": _linear,
    "mlp": _mlp,
    "transfer": _transfer,
    "pca_linear": _pca_linear,
    "pca_mlp": _pca_mlp,
}


# Fits made in this process, by the content of their training data and their settings: evaluators
# that need the same attacker (the attack on accounts pools the scores of the attackers fitted at
# its setting; re-identification names reconstructions with the attacker on raw pixels) fit it
# once. The newest FIT_CACHE_SIZE are kept; transfer (built by a module factory) is never reused.
FIT_CACHE_SIZE = 8
_FITS = Kept(FIT_CACHE_SIZE)


def _fit_key(family: str, x, y, seed: int, overrides: dict) -> str:
  h = hashlib.blake2b(digest_size=20)
  h.update(json.dumps([family, seed, overrides], sort_keys=True, default=repr).encode())
  for a in (x, y):
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
  return h.hexdigest()


def fit(
    family: str, x, y, *, seed: int = 0, module_factory: ModuleFactory | None = None, **overrides
):
  """(attacker, seconds its fit took): ``family`` fitted on ``x`` [N, ...] and labels ``y``, or
  the same fit made earlier in this process on identical data and settings."""
  if family not in ATTACKERS:
    raise KeyError(f"unknown attacker family {family!r}; known: {sorted(ATTACKERS)}")
  key = None if family == "transfer" else _fit_key(family, x, y, seed, overrides)
  kept = None if key is None else _FITS.get(key)
  if kept is not None:
    return kept
  start = time.perf_counter()
  attacker = ATTACKERS[family](x, y, seed=seed, module_factory=module_factory, **overrides)
  fitted = (attacker, time.perf_counter() - start)
  if key is not None:
    _FITS.put(key, fitted)
  return fitted


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
  """Fit ``family`` on the attacker's data (``fit``) and score it on the test data."""
  attacker, seconds = fit(
      family, x_train, y_train, seed=seed, module_factory=module_factory, **overrides
  )
  return attack_result(family, attacker, evaluate_attacker(attacker, x_test, y_test), seconds)


def strongest(results: dict[str, AttackResult]) -> tuple[str, AttackResult]:
  """The (name, result) with the highest top-1; ties go to the higher top-5."""
  if not results:
    raise ValueError("no attack results to compare")
  name = max(results, key=lambda k: (results[k].top1, results[k].top5))
  return name, results[name]


def summarize(results: dict[str, AttackResult], y_train, y_test) -> dict:
  """The report record of several families attacking one secret.

  ``families`` maps each family to ``AttackResult.summary()``; ``strongest``
  names the strongest and ``top1`` / ``top5`` (with ``_se``) are its scores.
  Baselines: ``chance_top1`` / ``chance_top5`` are uniform guessing over the
  attacker's classes (those in ``y_train``), ``majority_top1`` the best
  constant guess on ``y_test`` -- on imbalanced labels the bar to clear.
  """
  best, top = strongest(results)
  num_classes = int(np.unique(np.asarray(y_train)).size)
  return {
      "families": {f: r.summary() for f, r in results.items()},
      "strongest": best,
      "top1": top.top1,
      "top1_se": top.top1_se,
      "top5": top.top5,
      "top5_se": top.top5_se,
      "chance_top1": classification.chance_accuracy(y_train, 1, num_classes),
      "chance_top5": classification.chance_accuracy(y_train, 5, num_classes),
      "majority_top1": classification.majority_accuracy(y_test),
  }
