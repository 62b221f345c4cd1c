"""Attackers that train from a ``FeatureStore`` in bounded memory: streaming linear and Gram-PCA linear.

The in-memory families (``privjax.attacks.linear``, ``pca``) hold the attacker's features whole;
at VGG-16 ``conv4_3`` on LFW that is ~21 GB in float32. Here the features stay on disk
(``privjax.attacks.shards``) and what is held is set by ``memory_budget`` (bytes): one batch of
rows, or one block of columns, plus the model.

``fit_streaming_linear``: the linear attacker's objective (``privjax.attacks.linear``: mean
softmax cross-entropy on standardised features + ``l2 / 2 * ||W||^2``), minimised by minibatch
Adam (``optax.adam``) with a cosine-decayed step size. Why Adam: the features are standardised per
coordinate, but their scales after standardisation still differ by direction (a few strong
correlated directions, the reason ``linear`` preconditions L-BFGS); Adam's per-coordinate second
moments absorb much of that without an SVD of data we cannot hold, and it needs no line search
(a line search is a full pass over the disk per trial step). The step size is ``lr / sqrt(D)``:
an Adam step moves each coordinate by about the step size, in directions that are far from
aligned with a given row, so a standardised row's logits move by about ``step * sqrt(D)``; this
keeps that move independent of D (``lr = 0.3`` was the best of 0.1 / 0.3 / 1 at D = 1,024 and
4,096 on the synthetic problem of tests/test_streaming.py, l2 = 1e-2: 30 epochs of batches of
64 rows end 2% above L-BFGS's objective at D = 1,024 with the same test top-1, and 11-37% above
a smaller optimum at D = 4,096, test top-1 within 2.4 points). The decay to zero lets
the iterates settle at the optimum instead of bouncing with the minibatch noise. Several ``l2``
values are trained side by side (one read of the data serves all of them), the best on a
stratified val split of the attacker's training rows is kept and, with ``refit``, trained again on
all of them (as ``fit_linear`` does). Convergence is checked, not assumed, and by the objective, not
by the largest gradient entry (``linear``'s rule, 5e-2 of its value at zero, passed Adam fits that
were 5 top-1 points below L-BFGS at 2,000 x 4,096; the largest entry of a minibatch method's
gradient falls slowly while the objective is already close): after each cycle a pass computes the
full-batch gradient, and ``suboptimality_bound`` = ``||grad||^2 / (2 l2)`` over ``f(0) - f(w)`` is
an upper bound (strong convexity in W) on how far the objective is above the optimum, as a
fraction of the way from W = 0. ``converged`` means that bound is at most ``tol`` (1e-2). The final
fit runs cycles of ``epochs`` (30) epochs, each a cosine decay from half the last cycle's step size
warm-started from its end, until it converges or ``max_epochs`` (120) are spent; a fit that
stops at the cap is reported ``converged: false`` with the epochs it spent and a warning. The
result is a ``LinearAttacker``.

``fit_streaming_pca_linear``: ``pca_linear`` (``privjax.attacks.pca``: PCA size and whitening
chosen on the attacker's own val split, the linear attacker on the scaled codes) with every PCA
taken from one Gram matrix over the attacker's train and test rows (``privjax.privacy.pca``). The test rows enter the Gram
only to be projected: the means, eigenvectors and scales come from the training rows alone. The
codes are small (N x k) and the in-memory ``fit_linear`` fits them.

``run_streaming_attack`` fits and scores one of ``FAMILIES`` and returns the ``AttackResult`` the
in-memory families return (top-1 / top-5 with standard errors, log-rank, converged flags), so
``registry.summarize`` takes them side by side. The families take a store and row indices, not
arrays, so they are not in ``registry.ATTACKERS`` (whose families take ``x, y``).

Must not import ``privjax.train``, ``privjax.data`` or ``privjax.evaluate``.
"""

from __future__ import annotations

import functools
import logging
import time
import types
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from privjax.attacks import pca as pca_lib
from privjax.attacks import registry
from privjax.attacks.common import (
    AttackResult,
    ClassMap,
    Standardizer,
    divisor_from_std,
    evaluate_attacker,
    make_class_map,
    train_val_split,
)
from privjax.attacks.linear import DEFAULT_L2, LinearAttacker, fit_linear
from privjax.attacks.shards import FeatureStore
from privjax.errors import EvalError
from privjax.privacy import pca as features_pca

DEFAULT_BUDGET = 1 << 30
FAMILIES = ("streaming_linear", "streaming_pca_linear")
# Bytes held per feature value of a training batch: the host copy in the store's dtype, the
# standardised float32 copy and one float32 temporary of the backward pass.
_BATCH_BYTES_PER_VALUE = 8
# Model bytes per parameter: weights, Adam's two moments, the gradient.
_MODEL_BYTES_PER_PARAM = 16


def _batch_rows(store: FeatureStore, budget: int, model_bytes: int = 0, bytes_per_value: int = 4):
  left = int(budget) - int(model_bytes)
  if left <= 0:
    raise EvalError(
        f"memory budget {budget} bytes is below the model's {model_bytes} bytes; raise "
        "memory_budget or train fewer l2 values at once"
    )
  return store.rows_within(left, bytes_per_value=bytes_per_value + store.dtype.itemsize)


# ---------------------------------------------------------------------------------------------
# Feature moments.


@jax.jit
def _batch_moments(x):
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=0)
  return mean, jnp.sum(jnp.square(x - mean), axis=0)


def fit_streaming_standardizer(store: FeatureStore, rows, batch_rows: int) -> Standardizer:
  """Per-feature mean and std (divisor N, as ``common.fit_standardizer``) in one pass.

  Batches are merged with Chan et al.'s pairwise update in float64, so the result does not depend
  on the batch size beyond float32 rounding within a batch.
  """
  rows = np.asarray(rows)
  if rows.size == 0:
    raise EvalError("cannot fit a standardizer on zero rows")
  n, mean, m2 = 0, np.zeros(store.dim), np.zeros(store.dim)
  for pos, x in store.batches(rows, batch_rows):
    bm, bm2 = (np.asarray(v, np.float64) for v in _batch_moments(x))
    b = pos.size
    delta = bm - mean
    mean += delta * (b / (n + b))
    m2 += bm2 + delta**2 * (n * b / (n + b))
    n += b
  return Standardizer(mean=mean.astype(np.float32), std=divisor_from_std(np.sqrt(m2 / n)))


# ---------------------------------------------------------------------------------------------
# Streaming linear attacker.


def _nll(params, x, y, mask, mean, std):
  """Per-candidate mean NLL over the unmasked rows: [L]."""
  w, b = params  # [L, K, D], [L, K]
  xs = (x.astype(jnp.float32) - mean) / std
  logits = jnp.einsum("nd,lkd->lnk", xs, w, precision=jax.lax.Precision.HIGHEST) + b[:, None, :]
  nll = (
      jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, y[None, :, None], -1)[..., 0]
  )
  return jnp.sum(nll * mask, axis=1) / jnp.maximum(jnp.sum(mask), 1.0)


def _objective(params, x, y, mask, mean, std, l2s):
  w, _ = params
  per = _nll(params, x, y, mask, mean, std) + 0.5 * l2s * jnp.sum(jnp.square(w), axis=(1, 2))
  # Candidates share no parameters: the sum's gradient is each one's own.
  return jnp.sum(per), per


@functools.partial(jax.jit, static_argnames=("opt",), donate_argnums=(0, 1))
def _train_step(params, opt_state, x, y, mask, mean, std, l2s, *, opt):
  (_, per), grads = jax.value_and_grad(_objective, has_aux=True)(params, x, y, mask, mean, std, l2s)
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, per


@jax.jit
def _grad_sums(params, x, y, mask, mean, std):
  """Per-candidate NLL summed over the batch [L], and its gradient (the l2 term comes after)."""

  def total(p):
    per = _nll(p, x, y, mask, mean, std) * jnp.sum(mask)
    return jnp.sum(per), per

  (_, per), grads = jax.value_and_grad(total, has_aux=True)(params)
  return per, grads


def _full_gradient(store, rows, labels, params, standardizer, l2s, batch_rows):
  """(objective [L], largest |gradient entry| [L], squared gradient norm [L]) over ``rows``."""
  mean, std = jnp.asarray(standardizer.mean), jnp.asarray(standardizer.std)
  batch_rows = min(batch_rows, rows.size)
  value, grads = 0.0, None
  for pos, x in store.batches(rows, batch_rows):
    xb, yb, mb = _pad(x, labels[pos], batch_rows)
    v, g = _grad_sums(params, xb, yb, mb, mean, std)
    value = value + v
    grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
  n = rows.size
  gw, gb = (g / n for g in grads)
  w = params[0]
  gw = gw + l2s[:, None, None] * w
  objective = value / n + 0.5 * l2s * jnp.sum(jnp.square(w), axis=(1, 2))
  gmax = jnp.maximum(jnp.max(jnp.abs(gw), axis=(1, 2)), jnp.max(jnp.abs(gb), axis=1))
  gnorm2 = jnp.sum(jnp.square(gw), axis=(1, 2)) + jnp.sum(jnp.square(gb), axis=1)
  return np.asarray(objective), np.asarray(gmax), np.asarray(gnorm2)


def _pad(x, y, batch_rows):
  """Pad a short last batch to ``batch_rows`` (one compiled shape); the mask drops the padding."""
  m = x.shape[0]
  mask = np.ones(batch_rows, np.float32)
  if m < batch_rows:
    x = np.concatenate([x, np.zeros((batch_rows - m, x.shape[1]), x.dtype)])
    y = np.concatenate([y, np.zeros(batch_rows - m, y.dtype)])
    mask[m:] = 0.0
  return x, y, mask


def _adam_fit(
    store, rows, labels, num_classes, l2s, standardizer, *, epochs, batch_rows, lr, seed, init=None
):
  """Minibatch Adam on ``len(l2s)`` candidates at once; returns (params, steps, last-epoch loss).

  ``init``: parameters to start from (a warm restart), else zeros; the optimiser state is fresh.
  """
  batch_rows = min(batch_rows, rows.size)
  steps_per_epoch = -(-rows.size // batch_rows)
  total = max(1, epochs * steps_per_epoch)
  opt = optax.adam(optax.cosine_decay_schedule(lr / np.sqrt(store.dim), total))
  n_l2 = len(l2s)
  params = init
  if params is None:
    params = (
        jnp.zeros((n_l2, num_classes, store.dim), jnp.float32),
        jnp.zeros((n_l2, num_classes), jnp.float32),
    )
  opt_state = opt.init(params)
  mean, std = jnp.asarray(standardizer.mean), jnp.asarray(standardizer.std)
  l2s = jnp.asarray(l2s, jnp.float32)
  step, epoch_loss = 0, None
  for epoch in range(epochs):
    losses = []
    for pos, x in store.batches(rows, batch_rows, shuffle_seed=seed * 100_003 + epoch):
      xb, yb, mb = _pad(x, labels[pos], batch_rows)
      params, opt_state, per = _train_step(params, opt_state, xb, yb, mb, mean, std, l2s, opt=opt)
      losses.append(np.asarray(per) * pos.size)
      step += 1
    epoch_loss = np.sum(losses, axis=0) / rows.size
  return params, step, epoch_loss


def suboptimality_bound(objective: float, gnorm2: float, l2: float, num_classes: int) -> float:
  """Upper bound on the objective's distance to its optimum, relative to the way from W = 0.

  The objective is ``l2``-strongly convex in W, so ``f(w) - f* <= ||grad f(w)||^2 / (2 l2)``
  (Polyak-Lojasiewicz); divided by ``f(0) - f(w)`` (``f(0) = log K`` at W = 0, b = 0) it reads as a
  fraction of the progress made. The unpenalised bias makes this an estimate for the bias part,
  whose K entries are a negligible share of the parameters. ``inf`` when ``l2 == 0`` (no bound)
  or when no progress was made.
  """
  progress = float(np.log(num_classes)) - float(objective)
  if l2 <= 0 or progress <= 0:
    return float("inf")
  return float(gnorm2) / (2.0 * float(l2)) / progress


def _candidate(params, i, standardizer, class_map, l2, info=None) -> LinearAttacker:
  return LinearAttacker(
      weight=params[0][i],
      bias=params[1][i],
      standardizer=standardizer,
      class_map=class_map,
      l2=float(l2),
      family="streaming_linear",
      info=info or {},
  )


def fit_streaming_linear(
    store: FeatureStore,
    labels,
    rows=None,
    *,
    l2: float | Sequence[float] = DEFAULT_L2,
    val_fraction: float = 0.2,
    refit: bool = True,
    epochs: int = 30,
    max_epochs: int = 120,
    lr: float = 0.3,
    batch_rows: int = 128,
    tol: float = 1e-2,
    memory_budget: int = DEFAULT_BUDGET,
    seed: int = 0,
) -> LinearAttacker:
  """Fit the linear attacker on ``store``'s ``rows`` (default all) with ``labels`` [len(rows)].

  ``labels`` are the original ids of those rows, in the order of ``rows``. ``batch_rows`` is
  Adam's minibatch (128: at 2,500 x 1,024 and 2,000 x 4,096 its bound reached 1e-2 within 90
  epochs, against 120+ for 64, whose last iterates carry more minibatch noise), lowered if ``memory_budget`` holds fewer rows next to the model. The
  final fit runs cycles of ``epochs`` epochs (see the module docstring) until
  ``suboptimality_bound`` is at most ``tol`` or ``max_epochs`` are spent. ``info``: ``converged``,
  ``suboptimality_bound``, ``gmax`` (largest full-batch gradient entry), ``iterations`` (Adam
  steps of the final fit), ``epochs`` (spent), ``cycles`` (the bound after each), ``batch_rows``,
  per-candidate val top-1 under ``path``, ``val_top1``.
  """
  start = time.perf_counter()
  rows = np.arange(store.num_rows) if rows is None else np.asarray(rows, np.int64)
  labels = np.asarray(labels).reshape(-1)
  if labels.shape[0] != rows.size:
    raise EvalError(f"{labels.shape[0]} labels for {rows.size} rows")
  class_map = make_class_map(labels)
  y = class_map.encode(labels)
  k = class_map.num_classes
  l2s = np.atleast_1d(np.asarray(l2, np.float64))
  if l2s.size == 0 or np.any(l2s < 0):
    raise EvalError(f"l2 must be non-negative values, got {l2}")
  fits_at_once = l2s.size if l2s.size > 1 else 1
  model_bytes = fits_at_once * (k + 1) * store.dim * _MODEL_BYTES_PER_PARAM
  # The optimiser's batch, unless the budget holds fewer rows.
  batch_rows = int(
      min(
          batch_rows,
          rows.size,
          _batch_rows(store, memory_budget, model_bytes, _BATCH_BYTES_PER_VALUE),
      )
  )
  # Passes without an optimiser (moments, gradients, val scores) may take larger batches.
  stat_rows = min(rows.size, _batch_rows(store, memory_budget, model_bytes // fits_at_once))
  standardizer = fit_streaming_standardizer(store, rows, stat_rows)
  if not 1 <= epochs <= max_epochs:
    raise EvalError(f"epochs must be in [1, max_epochs={max_epochs}], got {epochs}")
  info: dict = {"batch_rows": batch_rows, "tol": tol, "lr": lr}
  chosen = float(l2s[0])
  if l2s.size > 1:
    tr, va = train_val_split(rows.size, val_fraction, seed, labels)
    if va.size == 0:
      raise EvalError("model selection over l2 needs a non-empty val split; pass a single l2")
    params, _, _ = _adam_fit(
        store,
        rows[tr],
        y[tr],
        k,
        l2s,
        standardizer,
        epochs=epochs,
        batch_rows=min(batch_rows, tr.size),
        lr=lr,
        seed=seed,
    )
    accs = []
    for i in range(l2s.size):
      attacker = _candidate(params, i, standardizer, class_map, l2s[i])
      accs.append(evaluate_store(attacker, store, rows[va], labels[va], stat_rows)["top1"])
    del params
    best = int(np.argmax(accs))  # first max; l2 is tried in the order given
    chosen = float(l2s[best])
    info["path"] = [{"l2": float(v), "val_top1": float(a)} for v, a in zip(l2s, accs)]
    info["val_top1"] = float(accs[best])
    if not refit:
      raise EvalError("fit_streaming_linear keeps no train-part model; use refit=True")
  # Cycles of `epochs` epochs, each a cosine decay from `lr` (halved per cycle), warm-started from
  # the last, until the suboptimality bound is within `tol` or `max_epochs` are spent.
  params, steps, done, cycles = None, 0, 0, []
  l2_arr = jnp.asarray([chosen], jnp.float32)
  while True:
    cycle = min(epochs, max_epochs - done)
    params, n, loss = _adam_fit(
        store,
        rows,
        y,
        k,
        [chosen],
        standardizer,
        epochs=cycle,
        batch_rows=batch_rows,
        lr=lr * 0.5 ** len(cycles),
        seed=seed + 1 + 7919 * len(cycles),
        init=params,
    )
    steps, done = steps + n, done + cycle
    value, gmax, gnorm2 = _full_gradient(store, rows, y, params, standardizer, l2_arr, stat_rows)
    bound = suboptimality_bound(value[0], gnorm2[0], chosen, k)
    cycles.append({"epochs": done, "objective": float(value[0]), "suboptimality_bound": bound})
    if bound <= tol or done >= max_epochs:
      break
  converged = bool(bound <= tol)
  if not converged:
    logging.warning(
        "streaming linear attacker: after %d epochs its objective may still be %.3g of the way "
        "from W = 0 above the optimum (tolerance %.3g); raise max_epochs to finish the fit",
        done,
        bound,
        tol,
    )
  info.update(
      l2=chosen,
      converged=converged,
      iterations=int(steps),
      epochs=done,
      cycles=cycles,
      suboptimality_bound=bound,
      gmax=float(gmax[0]),
      value=float(value[0]),
      last_epoch_loss=float(loss[0]),
      train_seconds=time.perf_counter() - start,
  )
  return _candidate(params, 0, standardizer, class_map, chosen, info)


def evaluate_store(attacker, store: FeatureStore, rows, labels, batch_rows: int) -> dict:
  """``common.evaluate_attacker``'s record on ``rows`` of ``store``, read a batch at a time."""
  rows = np.asarray(rows, np.int64)
  logits = np.concatenate(
      [np.asarray(attacker.logits(x)) for _, x in store.batches(rows, batch_rows)]
  )
  scored = types.SimpleNamespace(class_map=attacker.class_map, logits=lambda _: jnp.asarray(logits))
  return evaluate_attacker(scored, None, labels)


def _scale(eigvals, n, whiten):
  return pca_lib.code_scale(
      types.SimpleNamespace(explained_variance=eigvals / max(n - 1, 1)), whiten
  ).astype(np.float64)


class GramPCALinear:
  """``pca_linear`` whose PCA lives in a Gram matrix; scores the rows it was given, not new arrays."""

  family = "streaming_pca_linear"

  def __init__(self, base, test_codes, info):
    self.base, self._test_codes, self.info = base, test_codes, info

  @property
  def class_map(self) -> ClassMap:
    return self.base.class_map

  def test_scores(self, y_test) -> dict:
    return evaluate_attacker(self.base, self._test_codes, y_test)


def fit_streaming_pca_linear(
    store: FeatureStore,
    y_train,
    train_rows,
    test_rows,
    *,
    sizes: Sequence[int] = pca_lib.DEFAULT_SIZES,
    whiten: bool | Sequence[bool] = (False, True),
    val_fraction: float = 0.2,
    memory_budget: int = DEFAULT_BUDGET,
    seed: int = 0,
    method: str = "auto",
    n_iter: int = 1,
    progress=None,
    **linear_kw,
) -> GramPCALinear:
  """``pca.fit_pca_attacker(base='linear')`` on ``train_rows``, with ``test_rows`` projected too.

  ``method='gram'``: one Gram matrix over train and test rows (one pass over the store, N^2 D
  multiply-adds); each candidate PCA is an eigen-decomposition of a sub-matrix, the candidates'
  PCAs fitted on the train part of the val split, the final one on all training rows, as
  ``pca_linear`` does. ``method='randomized'``: one randomized PCA (``privjax.privacy.pca``, ``n_iter`` power
  iterations) of the largest candidate size on all training rows, then the codes of every row
  (one more pass); candidates are its leading components, so the val rows' features (not their
  labels) are inside the PCA that the val split scores: the price of not fitting a second PCA at
  ``2 + 2 n_iter`` passes each. ``'auto'``: the Gram path up to ``privjax.privacy.pca.EXACT_EIGH_MAX`` rows, else
  randomized. ``linear_kw`` go to ``fit_linear`` (e.g. ``max_iter``). ``progress(stage)``, if
  given, is called after the PCA and after the fits (the benchmark times them).
  """
  start = time.perf_counter()
  train_rows, test_rows = (np.asarray(r, np.int64) for r in (train_rows, test_rows))
  y_train = np.asarray(y_train).reshape(-1)
  n = train_rows.size
  if y_train.shape[0] != n:
    raise EvalError(f"{y_train.shape[0]} labels for {n} training rows")
  if method == "auto":
    method = "gram" if n + test_rows.size <= features_pca.EXACT_EIGH_MAX else "randomized"
  if method not in ("gram", "randomized"):
    raise EvalError(f"unknown streaming PCA method {method!r}; valid: auto, gram, randomized")
  if method == "randomized":
    return _randomized_pca_linear(
        store,
        y_train,
        train_rows,
        test_rows,
        sizes=sizes,
        whiten=whiten,
        val_fraction=val_fraction,
        memory_budget=memory_budget,
        seed=seed,
        n_iter=n_iter,
        progress=progress,
        start=start,
        **linear_kw,
    )
  everything = np.concatenate([train_rows, test_rows])
  t_all = np.arange(n)
  test_pos = np.arange(n, everything.size)
  gram, _ = features_pca.gram_matrix(store, everything, t_all, memory_budget=memory_budget)
  info: dict = {
      "base": "linear",
      "pca_method": "gram",
      "candidates": [],
      "gram_rows": int(everything.size),
      "gram_seconds": time.perf_counter() - start,
  }
  whitens = pca_lib._whiten_options(whiten)
  base_kw = dict(linear_kw, val_fraction=val_fraction)
  tr, va = train_val_split(n, val_fraction, seed, y_train)
  candidates = [(k, w) for k in pca_lib.candidate_sizes(sizes, tr.size, store.dim) for w in whitens]
  if len(candidates) > 1:
    if va.size == 0:
      raise EvalError("choosing among PCA sizes needs a non-empty val split")
    largest = max(k for k, _ in candidates)
    w_tr, u_tr = features_pca.gram_eigen(gram, tr, largest, seed=seed)
    codes_tr = features_pca.gram_codes(gram, tr, tr, w_tr, u_tr)
    codes_va = features_pca.gram_codes(gram, va, tr, w_tr, u_tr)
    for k, wh in candidates:
      scale = _scale(w_tr[:k], tr.size, wh)
      base = fit_linear(
          (codes_tr[:, :k] / scale).astype(np.float32),
          y_train[tr],
          seed=seed,
          standardize=False,
          **base_kw,
      )
      val_top1 = evaluate_attacker(base, (codes_va[:, :k] / scale).astype(np.float32), y_train[va])
      info["candidates"].append({"pca_k": k, "whiten": wh, "val_top1": val_top1["top1"]})
    best = max(range(len(candidates)), key=lambda i: info["candidates"][i]["val_top1"])
    info["val_top1"] = info["candidates"][best]["val_top1"]
    k, wh = candidates[best]
  else:
    ((k, wh),) = candidates
  w_all, u_all = features_pca.gram_eigen(gram, t_all, k, seed=seed)
  scale = _scale(w_all, n, wh)
  codes = features_pca.gram_codes(gram, t_all, t_all, w_all, u_all) / scale
  test_codes = (features_pca.gram_codes(gram, test_pos, t_all, w_all, u_all) / scale).astype(
      np.float32
  )
  del gram
  base = fit_linear(codes.astype(np.float32), y_train, seed=seed, standardize=False, **base_kw)
  info.update({key: base.info[key] for key in pca_lib.BASE_INFO if key in base.info})
  info.update(pca_k=int(k), whiten=bool(wh), train_seconds=time.perf_counter() - start)
  return GramPCALinear(base, test_codes, info)


def _randomized_pca_linear(
    store,
    y_train,
    train_rows,
    test_rows,
    *,
    sizes,
    whiten,
    val_fraction,
    memory_budget,
    seed,
    n_iter,
    progress,
    start,
    **linear_kw,
) -> GramPCALinear:
  n = train_rows.size
  whitens = pca_lib._whiten_options(whiten)
  ks = pca_lib.candidate_sizes(sizes, n, store.dim)
  pca = features_pca.fit_pca(
      store,
      max(ks),
      rows=train_rows,
      method="randomized",
      n_iter=n_iter,
      memory_budget=memory_budget,
      seed=seed,
      progress=progress,
  )
  codes = features_pca.project(
      pca, store, np.concatenate([train_rows, test_rows]), memory_budget=memory_budget
  )
  codes_train, codes_test = codes[:n].astype(np.float64), codes[n:].astype(np.float64)
  var = np.asarray(pca.explained_variance, np.float64)
  info: dict = {
      "base": "linear",
      "pca_method": "randomized",
      "pca_n_iter": int(n_iter),
      "candidates": [],
      "pca_seconds": time.perf_counter() - start,
  }
  if progress:
    progress("pca")
  base_kw = dict(linear_kw, val_fraction=val_fraction)
  candidates = [(k, w) for k in ks for w in whitens]
  k, wh = candidates[0]
  if len(candidates) > 1:
    tr, va = train_val_split(n, val_fraction, seed, y_train)
    if va.size == 0:
      raise EvalError("choosing among PCA sizes needs a non-empty val split")
    for k, wh in candidates:
      scale = _scale(var[:k] * max(n - 1, 1), n, wh)
      base = fit_linear(
          (codes_train[tr, :k] / scale).astype(np.float32),
          y_train[tr],
          seed=seed,
          standardize=False,
          **base_kw,
      )
      val = evaluate_attacker(base, (codes_train[va, :k] / scale).astype(np.float32), y_train[va])
      info["candidates"].append({"pca_k": k, "whiten": wh, "val_top1": val["top1"]})
    best = max(range(len(candidates)), key=lambda i: info["candidates"][i]["val_top1"])
    info["val_top1"] = info["candidates"][best]["val_top1"]
    k, wh = candidates[best]
  scale = _scale(var[:k] * max(n - 1, 1), n, wh)
  base = fit_linear(
      (codes_train[:, :k] / scale).astype(np.float32),
      y_train,
      seed=seed,
      standardize=False,
      **base_kw,
  )
  info.update({key: base.info[key] for key in pca_lib.BASE_INFO if key in base.info})
  info.update(pca_k=int(k), whiten=bool(wh), train_seconds=time.perf_counter() - start)
  if progress:
    progress("fit")
  return GramPCALinear(base, (codes_test[:, :k] / scale).astype(np.float32), info)


def run_streaming_attack(
    family: str,
    store: FeatureStore,
    y_train,
    y_test,
    train_rows,
    test_rows,
    *,
    seed: int = 0,
    memory_budget: int = DEFAULT_BUDGET,
    **overrides,
) -> AttackResult:
  """``registry.run_attack`` for a store: fit ``family`` on ``train_rows``, score ``test_rows``."""
  if family not in FAMILIES:
    raise EvalError(f"unknown streaming attacker {family!r}; valid: {', '.join(FAMILIES)}")
  start = time.perf_counter()
  if family == "streaming_linear":
    attacker = fit_streaming_linear(
        store, y_train, train_rows, seed=seed, memory_budget=memory_budget, **overrides
    )
    seconds = time.perf_counter() - start
    # LinearAttacker.logits applies the model 1024 rows at a time; read no more than that.
    eval_rows = min(1024, store.rows_within(memory_budget // 2, bytes_per_value=6))
    scores = evaluate_store(attacker, store, test_rows, y_test, eval_rows)
  else:
    attacker = fit_streaming_pca_linear(
        store, y_train, train_rows, test_rows, seed=seed, memory_budget=memory_budget, **overrides
    )
    seconds = time.perf_counter() - start
    scores = attacker.test_scores(y_test)
  return registry.attack_result(family, attacker, scores, seconds)
