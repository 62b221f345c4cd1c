"""Rank-based privacy measures.

Lives here:
  * ``sample_ranks`` / ``rank_privacy`` -- the rank privacy of Osia et al.
    2017 (arXiv 1710.01727, as in the authors' code): every noisy
    observation ``z_i = f_i + n_i`` ranks all clean transformed features
    ``f_j`` by Gaussian likelihood ``p(z_i | f_j)``, i.e. by
    ``||z_i - f_j||^2`` (smaller = more likely), and we record the 1-based
    position of the true ``f_i``.
  * ``class_ranks`` / ``log_rank_privacy`` -- the same rank statistic for an
    attacker's scores over identities/classes; the mean log-rank is the
    "log-rank privacy" of Osia et al., "Deep Private-Feature Extraction"
    (TKDE 2018).
  * ``summarize_ranks`` -- the shared summary (normalised rank, fraction
    ranked first, log-rank).
  * ``rank_privacy_reference`` -- a slow, direct numpy implementation kept
    for tests.

Tie convention everywhere: rank = 1 + number of candidates *strictly* more
likely than the true one, so exact ties favour the true candidate (no
noise -> rank 1 for every distinct sample).

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``
(metrics operate on arrays only).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "sample_ranks",
    "rank_privacy",
    "rank_privacy_reference",
    "class_ranks",
    "log_rank_privacy",
    "summarize_ranks",
]

_HIGHEST = jax.lax.Precision.HIGHEST


def _as_2d(x, name):
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise ValueError(f"{name} must have shape [N, ...], got a scalar")
  x = x.reshape(x.shape[0], -1)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x


def _round_significant(x, bits):
  m, e = jnp.frexp(x)
  return jnp.ldexp(jnp.round(m * 2.0**bits) / 2.0**bits, e)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _sample_ranks_blocked(clean, noisy, block_size):
  n, d = clean.shape
  # Distances are translation invariant; centring shrinks the norms in the
  # expansion ||z||^2 - 2 z.f + ||f||^2 and with them float32 cancellation
  # error (raw ReLU features can have a large common offset).  The offset
  # is rounded to 8 significant bits so that, on coarsely quantised data
  # (e.g. small integers), the subtraction and all products stay exact and
  # exactly tied distances remain ties instead of being split by rounding.
  mu = _round_significant(jnp.mean(clean, axis=0), 8)
  f = clean - mu
  z = noisy - mu
  # ||z_i||^2 is constant along a row, so ranking by
  # ||f_j||^2 - 2 z_i.f_j is ranking by distance.
  f_sq = jnp.sum(f * f, axis=1)

  n_blocks = -(-n // block_size)
  pad = n_blocks * block_size - n
  z_blocks = jnp.pad(z, ((0, pad), (0, 0))).reshape(n_blocks, block_size, d)
  true_idx = jnp.minimum(jnp.arange(n_blocks * block_size), n - 1).reshape(n_blocks, block_size)

  def one_block(args):
    zb, idx = args
    scores = f_sq[None, :] - 2.0 * jnp.matmul(zb, f.T, precision=_HIGHEST)  # [B, N]
    # The true score is read from the same matrix rather than recomputed,
    # so an exact duplicate f_j == f_i gets a bit-identical score and
    # counts as a tie, not as "more likely".
    true_score = jnp.take_along_axis(scores, idx[:, None], axis=1)
    return 1 + jnp.sum(scores < true_score, axis=1, dtype=jnp.int32)

  ranks = jax.lax.map(one_block, (z_blocks, true_idx))
  return ranks.reshape(-1)[:n]


def sample_ranks(clean, noisy, *, block_size: int = 1024):
  """1-based rank of each true sample among all ``N`` candidates.

  ``clean`` and ``noisy`` are ``[N, ...]`` (trailing dims are flattened);
  row ``i`` of ``noisy`` is the observation of row ``i`` of ``clean``.
  Peak extra memory is ``O(block_size * N)``; the computation is one
  compiled ``lax.map`` over zero-padded blocks of query rows.
  Returns ``int32 [N]``.
  """
  f = _as_2d(clean, "clean")
  z = _as_2d(noisy, "noisy")
  if f.shape != z.shape:
    raise ValueError(f"clean and noisy must have the same shape, got {f.shape} and {z.shape}")
  if f.shape[0] == 0:
    raise ValueError("sample_ranks needs at least one sample")
  if block_size < 1:
    raise ValueError(f"block_size must be positive, got {block_size}")
  dtype = jnp.result_type(f.dtype, z.dtype)
  # A block larger than N only adds padding work.
  return _sample_ranks_blocked(f.astype(dtype), z.astype(dtype), min(int(block_size), f.shape[0]))


def summarize_ranks(ranks, num_candidates: int) -> dict[str, float]:
  """Summary statistics of 1-based ranks among ``num_candidates``.

  Keys: ``mean_rank``, ``mean_normalized_rank`` (mean of
  ``(rank - 1) / (num_candidates - 1)``; 0 = no privacy, ~0.5 = random),
  ``fraction_first``, ``mean_log_rank``, ``max_log_rank``
  (``log(num_candidates)``), ``normalized_log_rank``
  (``mean_log_rank / max_log_rank``) and ``num_samples``; the standard
  errors of the three means over the samples ``mean_normalized_rank_se``,
  ``fraction_first_se`` and ``normalized_log_rank_se`` (None for one sample).
  """
  r = np.asarray(ranks, np.float64).reshape(-1)
  if num_candidates < 2:
    raise ValueError(f"rank statistics need at least 2 candidates, got {num_candidates}")
  if r.size == 0:
    raise ValueError("no ranks to summarize")
  if r.min() < 1 or r.max() > num_candidates:
    raise ValueError(f"ranks must lie in [1, {num_candidates}], got [{r.min()}, {r.max()}]")
  log_r = np.log(r)
  max_log = math.log(num_candidates)
  normalized = (r - 1.0) / (num_candidates - 1)

  def se(x):
    return float(np.std(x, ddof=1) / math.sqrt(x.size)) if x.size > 1 else None

  return {
      "mean_rank": float(r.mean()),
      "mean_normalized_rank": float(np.mean(normalized)),
      "mean_normalized_rank_se": se(normalized),
      "fraction_first": float(np.mean(r == 1)),
      "fraction_first_se": se((r == 1).astype(np.float64)),
      "mean_log_rank": float(log_r.mean()),
      "max_log_rank": float(max_log),
      "normalized_log_rank": float(log_r.mean() / max_log),
      "normalized_log_rank_se": se(log_r / max_log),
      "num_samples": int(r.size),
  }


def rank_privacy(clean, noisy, *, block_size: int = 1024) -> dict[str, float]:
  """Rank privacy of noisy observations against their clean features.

  See ``summarize_ranks`` for the keys; the candidate set is all ``N``
  test samples.
  """
  ranks = sample_ranks(clean, noisy, block_size=block_size)
  return summarize_ranks(ranks, int(ranks.shape[0]))


def rank_privacy_reference(clean, noisy) -> dict[str, float]:
  """Slow float64 reference for ``rank_privacy`` (tests only).

  Ranks by explicit squared distances, one query at a time.
  """
  f = np.asarray(clean, np.float64).reshape(len(clean), -1)
  z = np.asarray(noisy, np.float64).reshape(len(noisy), -1)
  n = f.shape[0]
  ranks = np.empty(n, np.int64)
  for i in range(n):
    dist = np.sum((z[i][None, :] - f) ** 2, axis=1)
    ranks[i] = 1 + int(np.sum(dist < dist[i]))
  out = summarize_ranks(ranks, n)
  out["ranks"] = ranks
  return out


def class_ranks(logits, labels):
  """1-based rank of the true class by score (``[N, C]`` logits, ``[N]`` labels).

  Ties are counted in favour of the true class (1 + number of classes with
  a strictly larger score).  Works on any monotone score: logits,
  log-probabilities or probabilities.  Returns ``int32 [N]``; jit-friendly.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels).astype(jnp.int32)
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(
        f"class_ranks expects logits [N, C] and labels [N], got {logits.shape} and {labels.shape}"
    )
  true = jnp.take_along_axis(logits, labels[:, None], axis=1)
  return 1 + jnp.sum(logits > true, axis=1, dtype=jnp.int32)


def log_rank_privacy(logits, labels) -> dict[str, float]:
  """Log-rank privacy of an attacker's scores over identities/classes.

  ``mean_log_rank`` is the mean log of the true identity's rank (higher =
  more private); candidates are the ``C`` classes, so ``max_log_rank`` is
  ``log(C)``.  ``fraction_first`` equals the attacker's top-1 accuracy
  (with ties resolved in the true class's favour).
  """
  logits = jnp.asarray(logits)
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[-1]):
    raise ValueError(
        f"labels must lie in [0, {logits.shape[-1]}), got [{labels.min()}, {labels.max()}]"
    )
  ranks = class_ranks(logits, labels)
  return summarize_ranks(ranks, int(logits.shape[1]))
