"""Shared pieces of the attacker families: standardisation, label maps,
stratified train/val splits, the result record and test-set evaluation.

Attackers are *evaluators* on frozen features: they only ever see arrays
handed to them (numpy or jax, shape [N, ...]) and integer labels with
arbitrary ids. Model selection (early stopping, L2 choice) uses a validation
part carved out of the attacker's own training data, never the test data.

This package must not import ``privjax.train`` or ``privjax.data``: the
attackers have to stay usable on any feature dump, independent of how the
features were produced.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from privjax.metrics import classification
from privjax.metrics.rank_privacy import log_rank_privacy

# A feature whose std on the fitted data is at most this fraction of the median std of the
# varying features counts as constant there (float32 rounding of a constant column is ~1e-7 of
# its value); the PCA attacker applies the same rule to its components.
RELATIVE_STD_FLOOR = 1e-4
EVAL_BATCH = 1024


class Kept:
  """The newest `size` results computed in this process, by key (a fit, a PCA, a baseline's
  scores). Locked: evaluations may run in threads side by side (privjax.experiments.runner). A
  result is computed outside the lock, so two threads asking for the same new key both compute
  it, with the same result."""

  def __init__(self, size: int):
    self.size = size
    self._items: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()

  def get(self, key):
    """The result kept under `key`, or None."""
    with self._lock:
      if key not in self._items:
        return None
      self._items.move_to_end(key)
      return self._items[key]

  def put(self, key, value) -> None:
    with self._lock:
      self._items[key] = value
      self._items.move_to_end(key)
      while len(self._items) > self.size:
        self._items.popitem(last=False)


@dataclasses.dataclass(frozen=True)
class Standardizer:
  """Per-feature affine map fitted on the attacker's training data.

  Siamese fine-tuning can shrink all features by a common factor; without
  this map a fixed L2 / learning rate would see a very different problem
  and the measured privacy would be an artefact of scale.

  ``std`` is the divisor: the feature's std, or ``+inf`` for a feature that
  was constant on the fitted data (``divisor_from_std``), which therefore
  standardises to exactly 0 on any finite input. Such a feature carries
  nothing an attacker could learn from, yet a dead ReLU unit that fires on a
  test image would otherwise reach |z| ~ 1e5 there.
  """

  mean: np.ndarray
  std: np.ndarray

  def apply(self, x):
    if isinstance(x, jax.Array):
      return (x.astype(jnp.float32) - self.mean) / self.std
    return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)


@jax.jit
def _moments(x):
  # Two passes (mean, then mean squared deviation): a large offset relative
  # to the spread does not cancel the variance away as E[x^2] - E[x]^2
  # would in float32; XLA's tree reductions keep the sums accurate.
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=0)
  return mean, jnp.sqrt(jnp.mean(jnp.square(x - mean), axis=0))


def divisor_from_std(std) -> np.ndarray:
  """Per-feature standardisation divisors (float32, same shape): ``std``, or ``+inf`` where constant.

  A feature is constant when its std is at most ``RELATIVE_STD_FLOOR`` times
  the median of the positive stds (all features, when none is positive).
  The floor is relative because features may have any common scale; an
  absolute floor would make an exactly-zero training column's divisor that
  floor, and its test values enormous.
  """
  std = np.asarray(std, np.float64)
  positive = std[std > 0]
  floor = RELATIVE_STD_FLOOR * float(np.median(positive)) if positive.size else 0.0
  return np.where(std > floor, std, np.inf).astype(np.float32)


def fit_standardizer(x) -> Standardizer:
  x = np.asarray(x)
  if x.shape[0] == 0:
    raise ValueError("cannot fit a standardizer on zero examples")
  mean, std = (np.asarray(v) for v in _moments(x))
  return Standardizer(mean=mean, std=divisor_from_std(std))


@dataclasses.dataclass(frozen=True)
class ClassMap:
  """Sorted original label ids; position = contiguous class index."""

  classes: np.ndarray

  @property
  def num_classes(self) -> int:
    return int(self.classes.shape[0])

  def encode(self, labels) -> np.ndarray:
    """Original ids -> 0..K-1; ids never seen in training map to -1."""
    labels = np.asarray(labels).reshape(-1)
    pos = np.searchsorted(self.classes, labels)
    pos = np.clip(pos, 0, self.num_classes - 1)
    known = self.classes[pos] == labels
    return np.where(known, pos, -1).astype(np.int32)

  def decode(self, idx) -> np.ndarray:
    return self.classes[np.asarray(idx)]


def make_class_map(labels) -> ClassMap:
  labels = np.asarray(labels).reshape(-1)
  if labels.size == 0:
    raise ValueError("cannot fit an attacker on zero examples")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
  return ClassMap(np.unique(labels))


def train_val_split(n: int, val_fraction: float, seed: int, labels=None):
  """Return (train_idx, val_idx), both sorted int arrays.

  With ``labels`` the split is stratified per class and every class keeps
  at least one training example (a class with a single example goes to
  train only), so the attacker can in principle predict every class.
  """
  rng = np.random.default_rng(seed)
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  if labels is None:
    perm = rng.permutation(n)
    n_val = int(round(n * val_fraction))
    n_val = min(n_val, n - 1) if n > 1 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
  labels = np.asarray(labels).reshape(-1)
  if labels.shape[0] != n:
    raise ValueError(f"{labels.shape[0]} labels for {n} examples")
  train, val = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    n_val = int(round(idx.size * val_fraction))
    n_val = min(n_val, idx.size - 1)
    val.append(idx[:n_val])
    train.append(idx[n_val:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# Entries of an attacker's ``info`` that reports carry (the rest -- validation
# histories, regularisation paths -- stays in the fitted attacker).
REPORTED_INFO = ("converged", "iterations", "max_iter", "pca_k", "whiten", "val_top1")


@dataclasses.dataclass
class AttackResult:
  """One fitted family scored on held-out data.

  ``top1_se`` / ``top5_se`` are binomial standard errors over the
  ``num_test`` test examples; ``log_rank`` is the normalised log-rank
  privacy of the attacker's scores (``privjax.metrics.log_rank_privacy``:
  0 = the true class always ranked first).
  """

  family: str
  top1: float
  top5: float
  num_classes: int
  train_seconds: float
  extra: dict = dataclasses.field(default_factory=dict)
  top1_se: float = 0.0
  top5_se: float = 0.0
  num_test: int = 0
  log_rank: float | None = None

  def summary(self) -> dict:
    """The JSON-ready record a report keeps for this family."""
    out = {
        "top1": self.top1,
        "top1_se": self.top1_se,
        "top5": self.top5,
        "top5_se": self.top5_se,
        "num_test": self.num_test,
        "log_rank": self.log_rank,
        "train_seconds": self.train_seconds,
    }
    out.update({k: self.extra[k] for k in REPORTED_INFO if k in self.extra})
    return out


@runtime_checkable
class Attacker(Protocol):
  family: str
  class_map: ClassMap

  def logits(self, x) -> jnp.ndarray:
    """Logits [N, num_classes] over the attacker's contiguous classes."""
    ...


def batched_apply(fn, x, batch_size: int = EVAL_BATCH) -> jnp.ndarray:
  """Apply a jitted per-batch function over the leading axis.

  Batches are padded to a fixed size so ``fn`` compiles once per input
  shape instead of once more for the ragged tail.
  """
  n = x.shape[0]
  if n == 0:
    raise ValueError("empty input")
  bs = min(batch_size, n)
  outs = []
  for start in range(0, n, bs):
    chunk = x[start : start + bs]
    m = chunk.shape[0]
    if m < bs:
      pad = [(0, bs - m)] + [(0, 0)] * (chunk.ndim - 1)
      chunk = (jnp.pad if isinstance(chunk, jax.Array) else np.pad)(chunk, pad)
    outs.append(fn(chunk)[:m])
  return jnp.concatenate(outs, axis=0)


def topk_correct(logits, labels, k: int):
  """Boolean [N]: label among the k (at most C) highest logits; label -1 never counts."""
  return classification.topk_correct(logits, labels, min(k, logits.shape[-1]))


def evaluate_attacker(attacker: Any, x_test, y_test) -> dict:
  """Top-1 / top-5 accuracy on a held-out set, with standard errors and log-rank.

  Labels go through the attacker's own class map; a test identity the
  attacker never saw is counted as a miss (it could not have named it) and
  left out of ``log_rank`` (it has no rank among the attacker's classes).
  With fewer than 5 classes top-5 is top-K.
  """
  labels = attacker.class_map.encode(y_test)
  logits = attacker.logits(x_test)
  n = int(labels.shape[0])
  top1 = float(jnp.mean(topk_correct(logits, jnp.asarray(labels), 1)))
  top5 = float(jnp.mean(topk_correct(logits, jnp.asarray(labels), 5)))
  known = labels >= 0
  log_rank = None
  if known.any() and logits.shape[1] > 1:
    ranks = log_rank_privacy(logits[np.flatnonzero(known)], labels[known])
    log_rank = ranks["normalized_log_rank"]
  return {
      "top1": top1,
      "top5": top5,
      "top1_se": classification.binomial_se(top1, n),
      "top5_se": classification.binomial_se(top5, n),
      "num_test": n,
      "log_rank": log_rank,
  }
