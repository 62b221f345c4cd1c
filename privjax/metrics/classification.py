"""Classification accuracy and chance baselines.

``topk_correct`` is the jit-friendly per-sample indicator; ``topk_accuracy``,
``chance_accuracy``, ``majority_accuracy`` and ``binomial_se`` return Python
floats for reports.  Used both for the public task and for attackers guessing
the private attribute (where the baselines tell how much an attack actually
learned, and the standard error whether a difference is more than test-set
sampling noise).

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "topk_correct",
    "topk_accuracy",
    "chance_accuracy",
    "majority_accuracy",
    "binomial_se",
    "clustered_se",
]


def topk_correct(logits, labels, k: int = 1):
  """Boolean ``[N]``: is the label among the ``k`` highest logits.

  Ties are broken by ``lax.top_k`` (lower class index first), *not* in the
  true class's favour: a collapsed model emitting constant logits must not
  score 100%.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(
        f"expected logits [N, C] and labels [N], got {logits.shape} and {labels.shape}"
    )
  if not 1 <= k <= logits.shape[1]:
    raise ValueError(f"k={k} must lie in [1, C={logits.shape[1]}]")
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == labels[:, None].astype(top.dtype), axis=1)


def topk_accuracy(logits, labels, k: int = 1) -> float:
  """Fraction of samples whose label is among the top-``k`` logits."""
  return float(jnp.mean(topk_correct(logits, labels, k)))


def chance_accuracy(labels, k: int = 1, num_classes: int | None = None) -> float:
  """Top-``k`` accuracy of uniform guessing: ``min(1, k / C)``.

  ``C`` is ``num_classes`` if given, else the number of distinct labels
  present in ``labels`` (classes missing from a small evaluation set are
  then not counted, so pass ``num_classes`` when it is known).
  """
  c = int(num_classes) if num_classes is not None else int(np.unique(np.asarray(labels)).size)
  if c < 1:
    raise ValueError("chance_accuracy needs at least one class")
  return min(1.0, k / c)


def majority_accuracy(labels) -> float:
  """Accuracy of always predicting the most frequent label of ``labels``.

  Given the evaluation labels, this is the best any constant guess can do
  on them: on imbalanced labels (gender on real photos) an attacker
  "at chance" ``1 / C`` may still be below it.
  """
  labels = np.asarray(labels).reshape(-1)
  if labels.size == 0:
    raise ValueError("majority_accuracy needs at least one label")
  _, counts = np.unique(labels, return_counts=True)
  return float(counts.max() / labels.size)


def binomial_se(p: float, n: int) -> float:
  """Standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` examples.

  It describes test-set sampling noise only (not run-to-run training
  variation); at ``p`` of 0 or 1 it is 0.
  """
  if n < 1:
    raise ValueError(f"binomial_se needs at least one example, got n={n}")
  p = float(p)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"an accuracy must lie in [0, 1], got {p}")
  return math.sqrt(p * (1.0 - p) / n)


def clustered_se(correct, clusters) -> float | None:
  """Standard error of the accuracy ``mean(correct)`` when outcomes within a cluster are dependent.

  The cluster-robust (sandwich) standard error of a ratio estimator: with ``c_j`` correct out of
  ``m_j`` outcomes in cluster j of J and ``p = sum c / sum m``,
  ``sqrt(J / (J - 1) * sum_j (c_j - p m_j)^2) / sum m``. For several test groups of one person
  (who may simply be hard to tell apart from someone else) this counts the person once, where
  ``binomial_se`` would treat every group as independent evidence. ``None`` with fewer than two
  clusters: the spread between clusters cannot be estimated.
  """
  correct = np.asarray(correct, np.float64).reshape(-1)
  clusters = np.asarray(clusters).reshape(-1)
  if correct.size == 0 or correct.shape != clusters.shape:
    raise ValueError(f"need one cluster per outcome, got {correct.shape} and {clusters.shape}")
  _, index = np.unique(clusters, return_inverse=True)
  num_clusters = int(index.max()) + 1
  if num_clusters < 2:
    return None
  hits = np.bincount(index, weights=correct, minlength=num_clusters)
  sizes = np.bincount(index, minlength=num_clusters).astype(np.float64)
  p = hits.sum() / sizes.sum()
  spread = num_clusters / (num_clusters - 1) * np.sum(np.square(hits - p * sizes))
  return float(math.sqrt(spread) / sizes.sum())
