"""Attacker-side dimension reduction: the attacker's own PCA in front of the linear or MLP attacker.

An attacker owns its preprocessing. On high-dimensional features and a few
thousand training examples, a classifier on the leading principal components
can beat the same classifier on all dimensions (fewer parameters to fit from
the same data), so the strongest attacker has to be taken over attackers with
and without such a step.

``fit_pca_attacker`` fits a PCA (``privjax.privacy.pca.fit_pca``) on
the attacker's own training features, to each of a few sizes (``sizes``,
capped by the number of training rows minus one and by the dimension), maps
the features to the scaled codes, and fits the base attacker (``fit_linear``
or ``fit_mlp``) on them. Scaling: ``whiten=True`` divides each component by
its standard deviation (whitening), ``whiten=False`` divides all components
by one common scale (the root mean variance), so the relative variances
survive but the codes still do not depend on the feature scale; the base
attacker's own per-feature standardisation is turned off, since it would
whiten the codes either way. By default both are tried: on the demo job's
``simple`` conv4_2 features (2000 attacker-train images of 100 people, 8192
dims, 7626 of them ReLU units that are zero on every one of those images)
identity top-1 was 35.7% for the plain linear attacker, 39.9% for the best
whitened PCA (k=128) and 50.5% for the unwhitened PCA-512 in front of it
(36.3%, 38.7%, 50.2% on ``siamese``; standard error 1.1). Probably because
per-feature standardisation and whitening raise weak directions to unit
variance, where the same L2 penalty restrains them far less.

Model selection uses only the attacker's training data: with more than one
(size, whitening) candidate, a stratified val part is held out, the PCA is
fitted on the rest (once, at the largest size, and truncated -- PCA subspaces
are nested), each candidate's base attacker is fitted there and scored on
val, and the best (ties -> the smaller size) is refitted, PCA included, on
all of the training data. ``info`` records every candidate's val top-1, the
chosen ``pca_k`` / ``whiten``, and the final base fit's convergence.

Must not import ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from privjax.attacks.common import Kept, divisor_from_std, evaluate_attacker, train_val_split
from privjax.attacks.linear import fit_linear
from privjax.attacks.mlp import fit_mlp
from privjax.privacy import pca as features_pca

DEFAULT_SIZES = (32, 128, 512)
# What the final base fit contributes to ``info`` (its L-BFGS convergence).
BASE_INFO = ("converged", "iterations", "max_iter", "capped_runs")
BASES = {"linear": fit_linear, "mlp": fit_mlp}


def candidate_sizes(sizes: Sequence[int], num_rows: int, dim: int) -> list[int]:
  """The distinct PCA sizes to try, each capped at ``min(num_rows - 1, dim)``, ascending.

  ``num_rows - 1``: centred data of ``num_rows`` rows spans at most that many
  directions, and a component beyond them has no variance to scale by.
  """
  cap = min(int(num_rows) - 1, int(dim))
  if cap < 1:
    raise ValueError(f"a PCA attacker needs at least 2 training rows, got {num_rows}")
  sizes = list(sizes)
  if not sizes or any(isinstance(k, bool) or int(k) != k or k < 1 for k in sizes):
    raise ValueError(f"PCA sizes must be positive integers, got {sizes}")
  return sorted({min(int(k), cap) for k in sizes})


def _whiten_options(whiten) -> tuple[bool, ...]:
  if isinstance(whiten, (bool, np.bool_)):
    return (bool(whiten),)
  options = tuple(dict.fromkeys(bool(w) for w in whiten))
  if not options:
    raise ValueError("whiten must be a bool or a non-empty sequence of bools")
  return options


def code_scale(pca: features_pca.PCA, whiten: bool) -> np.ndarray:
  """Per-component divisor of the PCA codes: their std (whitening) or one common scale.

  A component without variance on the training rows gets ``+inf`` (code 0), by the rule that
  every standardisation here follows (``common.divisor_from_std``): whitening must not blow
  rounding noise up to unit variance.
  """
  sd = np.sqrt(np.maximum(np.asarray(pca.explained_variance, np.float64), 0.0))
  scale = divisor_from_std(sd)
  if not whiten:
    scale = np.where(np.isfinite(scale), np.float32(np.sqrt(np.mean(sd**2))), scale)
  return scale.astype(np.float32)


# pca_linear and pca_mlp on the same features fit the same PCAs; on 2000 x 8192
# features one fit takes 5-10 s on 2 CPU cores, hashing the rows ~0.1 s.
_PCA_CACHE = Kept(4)


def _fit_pca(x: np.ndarray, k: int, seed: int) -> features_pca.PCA:
  x = np.ascontiguousarray(x)
  h = hashlib.sha256(memoryview(x).cast("B")).hexdigest()
  key = (h, x.shape, x.dtype.str, int(k), int(seed))
  pca = _PCA_CACHE.get(key)
  if pca is None:
    pca = features_pca.fit_pca(x, k, seed=seed)
    _PCA_CACHE.put(key, pca)
  return pca


def _codes(pca, scale, x, block: int = 4096) -> np.ndarray:
  """(x - mean) @ components.T / scale in float32, ``block`` rows at a time.

  numpy rather than a jitted function: every new (rows, k) shape -- each
  candidate size, the val part, the test set -- would compile again, which on
  small problems costs more than the product itself.
  """
  mean = np.asarray(pca.mean, np.float32)
  proj = (np.asarray(pca.components, np.float32) / scale[:, None]).T
  out = np.empty((x.shape[0], proj.shape[1]), np.float32)
  for s in range(0, x.shape[0], block):
    out[s : s + block] = (np.asarray(x[s : s + block], np.float32) - mean) @ proj
  return out


@dataclasses.dataclass
class PCAAttacker:
  """A base attacker on scaled PCA codes; ``logits`` takes the original features."""

  pca: features_pca.PCA
  scale: np.ndarray
  base: Any
  family: str
  info: dict = dataclasses.field(default_factory=dict)

  @property
  def class_map(self):
    return self.base.class_map

  def codes(self, x) -> np.ndarray:
    x = np.asarray(x)
    return _codes(self.pca, self.scale, x.reshape(x.shape[0], -1))

  def logits(self, x) -> jnp.ndarray:
    return self.base.logits(self.codes(x))

  def predict(self, x) -> np.ndarray:
    return self.class_map.decode(np.asarray(jnp.argmax(self.logits(x), axis=1)))


def _fit_on_codes(x, y, k, whiten, fit_base, family, seed, base_kw, pca=None):
  pca = _fit_pca(x, k, seed) if pca is None else pca
  scale = code_scale(pca, whiten)
  base = fit_base(_codes(pca, scale, x), y, seed=seed, standardize=False, **base_kw)
  return PCAAttacker(pca=pca, scale=scale, base=base, family=family)


def fit_pca_attacker(
    x,
    y,
    *,
    base: str = "linear",
    sizes: Sequence[int] = DEFAULT_SIZES,
    whiten: bool | Sequence[bool] = (False, True),
    val_fraction: float = 0.2,
    seed: int = 0,
    **base_kw,
) -> PCAAttacker:
  """PCA (size and whitening chosen on the attacker's own val split) then the ``base`` attacker.

  ``x`` is [N, ...] (flattened here), ``y`` [N] integer labels. ``val_fraction``
  is used for the size selection and passed on to the base attacker (its L2
  choice or early stopping); the other keyword arguments go to ``fit_linear``
  or ``fit_mlp`` (e.g. ``max_iter``, ``hidden``). The family is
  ``'pca_' + base``.
  """
  if base not in BASES:
    raise ValueError(f"unknown base attacker {base!r}; valid: {sorted(BASES)}")
  start = time.perf_counter()
  fit_base, family = BASES[base], f"pca_{base}"
  x = np.asarray(x)
  if x.ndim < 2:
    raise ValueError(f"features must be [N, ...], got shape {x.shape}")
  x = x.reshape(x.shape[0], -1)
  y = np.asarray(y).reshape(-1)
  n, d = x.shape
  base_kw = dict(base_kw, val_fraction=val_fraction)
  whitens = _whiten_options(whiten)
  train_idx, val_idx = train_val_split(n, val_fraction, seed, y)
  candidates = [(k, w) for k in candidate_sizes(sizes, train_idx.size, d) for w in whitens]
  info: dict = {"base": base, "candidates": []}
  if len(candidates) > 1:
    if val_idx.size == 0:
      raise ValueError(
          "choosing among PCA sizes needs a non-empty val split; pass one size or a "
          "larger val_fraction"
      )
    x_tr, y_tr = x[train_idx], y[train_idx]
    largest = _fit_pca(x_tr, max(k for k, _ in candidates), seed)
    for k, w in candidates:
      attacker = _fit_on_codes(
          x_tr, y_tr, k, w, fit_base, family, seed, base_kw, pca=largest.truncate(k)
      )
      val_top1 = evaluate_attacker(attacker, x[val_idx], y[val_idx])["top1"]
      info["candidates"].append({"pca_k": k, "whiten": w, "val_top1": val_top1})
    # Candidates are in ascending size, so the first best is the smallest.
    best = max(range(len(candidates)), key=lambda i: info["candidates"][i]["val_top1"])
    info["val_top1"] = info["candidates"][best]["val_top1"]
    k, w = candidates[best]
  else:
    # One candidate: nothing to choose, so no data is held out for it.
    ((k, w),) = candidates
  attacker = _fit_on_codes(x, y, k, w, fit_base, family, seed, base_kw)
  base_info = getattr(attacker.base, "info", {})
  info.update({key: base_info[key] for key in BASE_INFO if key in base_info})
  info.update(pca_k=int(k), whiten=bool(w), train_seconds=time.perf_counter() - start)
  attacker.info = info
  return attacker
