"""Linear attacker: L2-regularised multinomial logistic regression.

Objective (per fit, on standardised flattened features)::

    mean_i CE(softmax(W x_i + b), y_i) + l2 / 2 * ||W||_F^2     (b unpenalised)

which is scikit-learn's ``LogisticRegression`` objective with
``C = 1 / (l2 * n_samples)``.

Solver: full-batch L-BFGS (``optax.lbfgs`` with its zoom linesearch), the
whole optimisation inside one ``lax.while_loop`` under ``jax.jit``; it stops
when the largest absolute entry of the gradient w.r.t. (W, b) drops below
``tol`` times its value at W = 0, b = 0, or after ``max_iter`` iterations.
The rule is relative because gradient entries shrink like 1/K: scikit-learn's
absolute ``gtol=1e-4`` is a relative ~2e-2 on the 100-class benchmark and
stopped ~9% above the optimal objective, where test accuracy still moves by
several points with the optimisation path. The default ``tol=1e-3`` lands
within ~0.1% of the optimum, and fits with and without the preconditioner
then agree. ``l2``, ``tol`` and ``max_iter`` are traced arguments, so
changing them never recompiles.

Bounded cost: each L-BFGS run stops after at most ``max_iter`` iterations
(each a few objective evaluations), so a fit costs at most
``(len(l2) + 1) * max_iter`` iterations; pass it as an attacker override
(``{'linear': {'max_iter': 100}}`` in the eval config) to bound it further.
A run that stops at the cap instead of on ``tol`` has not converged: the fit
logs a warning and ``info`` says so (``converged``, ``iterations`` of the
final model's run, ``capped_runs`` over all runs), and reports carry it.

Preconditioning (large problems): when a few covariance directions are far
stronger than the rest (the benchmark's low-rank nuisance; correlated CNN
activations often look like this), L-BFGS's short memory handles them
poorly. We optimise over A with W = A P, P = I + V^T (diag(a)
- 1) V, V the top-64 right singular vectors of the standardised features (a
randomised SVD costing a few gradient evaluations) and a_i shrinking
them to the 64th. This is an exact change of variables (the L2 penalty is
rewritten in A, the stopping rule is measured on the W-gradient), so the
optimum is unchanged; on the 10,000 x 8,192 x 100 benchmark it cut the
evaluations of the full l2 sweep from ~245 to ~108 and of a single fit from
~54 to ~34 (tol=1e-3).

Row space (more features than rows): the optimum W of an L2-penalised
linear model lies in the span of the training rows (the gradient
G^T X + l2 W stays there from W = 0), so with B [r, D] an orthonormal basis
of that span (from the rows' Gram matrix, in float64) W = V B is an exact
change of variables: the loss sees X B^T = U S [N, r], ||W|| = ||V||, and
L-BFGS (invariant under rotations of its variables) takes the same steps in
V as in W. The stopping rule is still the largest |dL/dW| entry,
dL/dW = dL/dV B, computed only once the per-class bound
max |dL/dW| >= ||dL/dW_k||_2 / sqrt(D) can no longer rule it out. On the
demo's 2,000 x 8,192 features with 100 identities each objective
evaluation then costs r/D of the full one; ``rowspace`` (default: by the
cost model in ``_use_rowspace``) chooses.

Model selection: with several ``l2`` values, the attacker's training data is
split (stratified) into train/val; the values are solved strong-to-weak along
a warm-started regularisation path on the train part (one jitted call), the
one with the best val top-1 is kept (ties -> the stronger penalty), then the
model is refitted on train+val with that ``l2``, warm-started from the
train-part solution. With a single ``l2`` value there is nothing to select, so
it is fitted on all the data directly.

Must not import ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from privjax.attacks.common import (
    ClassMap,
    Standardizer,
    batched_apply,
    fit_standardizer,
    make_class_map,
    train_val_split,
)

DEFAULT_L2 = (1e-4, 1e-3, 1e-2, 1e-1)
PRECONDITION_RANK = 64


def _flatten(x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim < 2:
    raise ValueError(f"features must be [N, ...], got shape {x.shape}")
  return x.reshape(x.shape[0], -1)


def _project(a, pre, power):
  """a @ P**power for P = I + V^T (diag(alpha) - 1) V (V = pre[0] rows orthonormal)."""
  vt, alpha = pre
  return a + ((a @ vt.T) * (alpha**power - 1.0)) @ vt


def _objective(params, x, y, l2, pre):
  # Parameters are A with W = A P; x is already X P, so X W^T = x A^T and
  # ||W||^2 = ||A||^2 + sum_i (alpha_i^2 - 1) ||A v_i||^2. With an empty
  # V this is the plain problem.
  # A is stored [K, D] (class-major): on XLA:CPU both the forward and the
  # backward matmul then avoid a transposed copy of the [N, D] features,
  # which measured ~1.7x faster per evaluation than a [D, K] layout.
  a, b = params
  vt, alpha = pre
  # Full f32 matmuls: on GPUs the default precision may be TF32, whose
  # ~1e-3 relative error is as large as the stopping threshold and slows
  # the linesearch (benchmark on an H200, l2=0.1 from zero: 82 iterations
  # at default precision, 50 at HIGHEST; ~30 on CPU). XLA:CPU computes f32
  # either way.
  logits = (
      jax.lax.dot_general(x, a, (((1,), (1,)), ((), ())), precision=jax.lax.Precision.HIGHEST) + b
  )
  nll = jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
  av = a @ vt.T
  penalty = jnp.vdot(a, a) + jnp.sum((alpha**2 - 1.0) * av**2)
  return jnp.mean(nll) + 0.5 * l2 * penalty


@functools.partial(jax.jit, static_argnames=("rank", "power_iters"))
def _build_preconditioner(x, key, *, rank, power_iters=1):
  """Top-``rank`` right singular directions of x (randomised SVD) and scales.

  alpha_i = sqrt(lambda_rank / lambda_i) shrinks the dominant directions
  of the feature covariance to the level of the rank-th one. Any
  orthonormal V and alpha in (0, 1] give an exact change of variables, so
  the quality of the randomised SVD only affects speed, never the optimum.
  """
  omega = jax.random.normal(key, (x.shape[1], rank + 8), x.dtype)
  sketch = x @ omega
  for _ in range(power_iters):
    sketch = x @ (x.T @ jnp.linalg.qr(sketch)[0])
  q = jnp.linalg.qr(sketch)[0]
  _, s, vt = jnp.linalg.svd(q.T @ x, full_matrices=False)
  lam = jnp.maximum(s[:rank] ** 2 / x.shape[0], 1e-12)
  alpha = jnp.minimum(jnp.sqrt(lam[-1] / lam), 1.0)
  return vt[:rank], alpha


@jax.jit
def _precondition_rows(x, vt, alpha):
  return _project(x, (vt, alpha), 1)


def _row_basis(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
  """(X B^T [N, N], B [N, D], r): an orthonormal basis B of the r-dimensional span of the rows of
  ``xs``, padded with zero rows to N (every fit on N rows then has the same shapes and compiles
  once; the padded coordinates see no data and stay at zero under the penalty).

  From the eigendecomposition of the Gram matrix X X^T = U S^2 U^T in
  float64 (float32 would lose the directions below sqrt(eps) of the
  largest): B = S^-1 U^T X, X B^T = U S. Directions with a singular value
  below 1e-4 of the largest are left out: their basis vectors would carry
  the float32 features' rounding error amplified 1e4 times, and the L2
  penalty keeps the optimum's weight on them near zero.
  """
  x64 = xs.astype(np.float64)
  lam, u = np.linalg.eigh(x64 @ x64.T)
  lam = np.maximum(lam, 0.0)
  keep = lam > lam.max() * 1e-8  # singular values above 1e-4 of the largest
  s = np.sqrt(lam[keep])
  u = u[:, keep]
  n, r = xs.shape[0], s.size
  z = np.zeros((n, n), np.float32)
  z[:, :r] = u * s
  basis = np.zeros((n, xs.shape[1]), np.float32)
  basis[:r] = (u / s).T @ x64
  return z, basis, r


def _use_rowspace(n: int, d: int, k: int, num_l2: int) -> bool:
  """Whether solving in the row space pays: the basis costs ~2 N^2 D float64 flops (counted
  4x float32's); each objective evaluation saves ~4 N K (D - N), over ~50 evaluations a penalty
  (the demo's identity fits take 30-60)."""
  if d < 2 * n:
    return False
  saved = 50 * (num_l2 + 1) * 4 * n * k * (d - n)
  return saved > 4 * 2 * n * n * d


def _gmax_w(gv, gb, basis, tol):
  """Largest |dL/dW|, |dL/db| given dL/dV (W = V B; ``basis`` None: V is W).

  With a basis, the exact value (a [K, r] x [r, D] product) is computed only when the cheap
  lower bound max_k ||dL/dW_k||_2 / sqrt(D) (rows of B orthonormal) is at most ``tol``; above it
  the bound is returned, which decides a ``> tol`` test the same way. ``tol`` None: always exact.
  """
  gbmax = jnp.max(jnp.abs(gb))
  if basis is None:
    return jnp.maximum(jnp.max(jnp.abs(gv)), gbmax)

  def exact():
    # HIGHEST: on GPUs the default may be TF32, whose error is as large as the stopping threshold.
    gw = jnp.matmul(gv, basis, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(jnp.max(jnp.abs(gw)), gbmax)

  if tol is None:
    return exact()
  bound = jnp.maximum(jnp.sqrt(jnp.max(jnp.sum(gv * gv, axis=1)) / basis.shape[1]), gbmax)
  return jax.lax.cond(bound > tol, lambda: bound, exact)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _gmax_at_zero(x, y, pre, basis, *, num_classes):
  """Largest |dL/dW|, |dL/db| at W = 0, b = 0 (the l2 term vanishes there)."""
  g = (1.0 / num_classes - jax.nn.one_hot(y, num_classes)) / x.shape[0]
  return _gmax_w(_project(g.T @ x, pre, -1), jnp.sum(g, axis=0), basis, None)


def _lbfgs_loop(x, y, l2, params, pre, basis, tol, max_iter, memory_size):
  """Run L-BFGS from ``params``; returns (params, iters, evals, value, gmax).

  ``gmax`` is the largest absolute entry of the gradient w.r.t. the
  original (W, b), dL/dW = dL/dA P^-1 B, so the stopping rule means the same
  with or without the preconditioner and the row-space basis.
  """

  def fun(p):
    return _objective(p, x, y, l2, pre)

  opt = optax.lbfgs(memory_size=memory_size)
  value_and_grad = optax.value_and_grad_from_state(fun)

  def gmax_of(state, bound_above=None):
    ga, gb = optax.tree.get(state, "grad")
    return _gmax_w(_project(ga, pre, -1), gb, basis, bound_above)

  def cond(carry):
    _, state, it, _ = carry
    return (it == 0) | ((it < max_iter) & (gmax_of(state, tol) > tol))

  def body(carry):
    p, state, it, evals = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=fun)
    ls_steps = optax.tree.get(state, "num_linesearch_steps")
    return optax.apply_updates(p, updates), state, it + 1, evals + ls_steps

  state0 = opt.init(params)
  # The first iteration evaluates the objective once outside the linesearch
  # (the state holds no value yet); later ones reuse the linesearch's.
  p, state, it, evals = jax.lax.while_loop(cond, body, (params, state0, jnp.int32(0), jnp.int32(1)))
  return p, it, evals, optax.tree.get(state, "value"), gmax_of(state)


@functools.partial(jax.jit, static_argnames=("memory_size",))
def _solve(x, y, l2, params, pre, basis, tol, max_iter, *, memory_size=10):
  return _lbfgs_loop(x, y, l2, params, pre, basis, tol, max_iter, memory_size)


@functools.partial(jax.jit, static_argnames=("memory_size",))
def _path(x, y, x_val, y_val, l2s, params, pre, basis, tol, max_iter, *, memory_size=10):
  """Warm-started regularisation path over ``l2s`` (in the given order).

  Only the best-val parameters are carried, so memory does not grow with the
  number of candidate penalties.
  """

  def step(carry, l2):
    warm, best, best_acc = carry
    p, it, evals, value, gmax = _lbfgs_loop(x, y, l2, warm, pre, basis, tol, max_iter, memory_size)
    w, b = p
    pred = jnp.argmax(jax.lax.dot_general(x_val, w, (((1,), (1,)), ((), ()))) + b, axis=1)
    acc = jnp.mean(pred == y_val)
    better = acc > best_acc
    best = jax.tree.map(lambda new, old: jnp.where(better, new, old), p, best)
    return (p, best, jnp.maximum(acc, best_acc)), (acc, it, evals, value, gmax)

  init = (params, params, jnp.float32(-1.0))
  (_, best, _), stats = jax.lax.scan(step, init, l2s)
  return best, stats


@dataclasses.dataclass
class LinearAttacker:
  """Fitted softmax regression; ``weight`` is [K, D], ``bias`` [K]."""

  weight: jax.Array
  bias: jax.Array
  standardizer: Standardizer
  class_map: ClassMap
  l2: float
  family: str = "linear"
  info: dict = dataclasses.field(default_factory=dict)

  def logits(self, x) -> jnp.ndarray:
    x = np.asarray(x)
    x = x.reshape(x.shape[0], -1)
    return batched_apply(self._logits_batch, x)

  @functools.cached_property
  def _logits_batch(self):
    mean = jnp.asarray(self.standardizer.mean.reshape(-1))
    std = jnp.asarray(self.standardizer.std.reshape(-1))
    w, b = self.weight, self.bias

    @jax.jit
    def f(xb):
      xb = (xb.astype(jnp.float32) - mean) / std
      return jax.lax.dot_general(xb, w, (((1,), (1,)), ((), ()))) + b

    return f

  def predict(self, x) -> np.ndarray:
    """Predicted labels in the caller's original ids."""
    return self.class_map.decode(np.asarray(jnp.argmax(self.logits(x), axis=1)))


def _no_preconditioner(d: int):
  return jnp.zeros((0, d), jnp.float32), jnp.zeros((0,), jnp.float32)


def _report_convergence(info: dict, final: dict, max_iter: int, gtol: float) -> None:
  """Record whether the final model's L-BFGS run converged, and warn once about the runs that did
  not.

  A run can stop at the cap with the gradient just below ``gtol`` (the
  cap and the tolerance were reached on the same iteration); that counts as
  converged, so the test is the gradient, not the iteration count. One
  warning per fit names every capped run: the chosen penalty's run on the
  val split and its refit on all rows have the same l2, and a line per run
  read as the same warning printed twice.
  """
  path = info.get("path", [])
  runs = [(r, f"l2={r['l2']:g} on the val split") for r in path]
  if "refit" in info:
    final_run = f"l2={final['l2']:g}" + (" refitted on all rows" if path else "")
    runs.append((final, final_run))
  capped = [name for r, name in runs if not r["converged"]]
  info.update(converged=final["converged"], iterations=final["iters"], capped_runs=len(capped))
  if capped:
    logging.warning(
        "linear attacker: %d L-BFGS run%s stopped at the cap of %d iterations before the "
        "gradient fell below %.3g (%s); the fit has not converged, raise max_iter to finish it",
        len(capped),
        "s" * (len(capped) > 1),
        max_iter,
        gtol,
        "; ".join(capped),
    )


def fit_linear(
    x,
    y,
    *,
    l2: float | Sequence[float] = DEFAULT_L2,
    val_fraction: float = 0.2,
    max_iter: int = 200,
    tol: float = 1e-3,
    refit: bool = True,
    precondition: bool | None = None,
    standardize: bool = True,
    rowspace: bool | None = None,
    seed: int = 0,
) -> LinearAttacker:
  """Fit the linear attacker on features ``x`` [N, ...] and labels ``y`` [N].

  ``l2`` is the penalty on the mean-loss scale (see module docstring); with
  several values the best on a stratified val split is chosen and, if
  ``refit``, the model is refitted on all of ``x`` with it. ``tol`` is
  relative to the gradient at zero (``info['gtol']`` is the absolute value
  used, comparable with scikit-learn's ``tol``).
  ``precondition`` (default: when N * D >= 2**22) rescales the top
  PRECONDITION_RANK covariance directions (exact change of variables, see
  ``_build_preconditioner``); small problems skip it because the extra
  compile costs more than it saves. ``info`` on the result records the
  per-candidate val accuracy, iteration and evaluation counts and the final
  gradient max-norm; ``converged`` / ``iterations`` describe the L-BFGS run
  that produced the returned model (see the module docstring on
  ``max_iter``). ``standardize=False`` fits on ``x`` as given, for callers
  that have already scaled it (the PCA attacker's codes). ``rowspace``
  (default: ``_use_rowspace``'s cost model) solves in the span of the
  training rows, an exact change of variables (module docstring).
  """
  start = time.perf_counter()
  x = _flatten(x)
  class_map = make_class_map(y)
  labels = class_map.encode(y)
  n, d = x.shape
  if standardize:
    standardizer = fit_standardizer(x)
  else:
    standardizer = Standardizer(np.zeros(d, np.float32), np.ones(d, np.float32))
  k = class_map.num_classes
  l2s = np.atleast_1d(np.asarray(l2, dtype=np.float64))
  if l2s.size == 0 or np.any(l2s < 0):
    raise ValueError(f"l2 must be non-negative values, got {l2}")
  xs = standardizer.apply(x)
  ys = jnp.asarray(labels)
  if rowspace is None:
    rowspace = _use_rowspace(n, d, k, l2s.size)
  basis, span = None, d  # span: the dimension the rows span (at most D)
  if rowspace:
    xs, basis, span = _row_basis(np.asarray(xs))
    basis = jnp.asarray(basis)
  xs = jnp.asarray(xs)
  r = xs.shape[1]  # the dimension L-BFGS works in: D, or N with the row-space basis

  rank = min(PRECONDITION_RANK, min(n, span) // 4)
  if precondition is None:
    precondition = n * d >= 2**22
  if precondition and rank >= 8:
    pre = _build_preconditioner(xs, jax.random.key(seed), rank=rank)
    xs = _precondition_rows(xs, *pre)
  else:
    pre = _no_preconditioner(r)
  info: dict = {
      "tol": tol,
      "max_iter": max_iter,
      "precondition_rank": int(pre[0].shape[0]),
      "rowspace_rank": None if basis is None else span,
  }

  # Relative stopping rule (module docstring): gradient entries scale like
  # 1/K, so an absolute threshold means a different accuracy per problem.
  gtol = float(tol) * float(_gmax_at_zero(xs, ys, pre, basis, num_classes=k))
  info["gtol"] = gtol
  params = (jnp.zeros((k, r), jnp.float32), jnp.zeros((k,), jnp.float32))
  chosen = float(l2s[0])
  if l2s.size > 1:
    train_idx, val_idx = train_val_split(n, val_fraction, seed, labels)
    if val_idx.size == 0:
      raise ValueError(
          "model selection over l2 needs a non-empty val split; "
          "pass a single l2 or a larger val_fraction"
      )
    # Strong-to-weak: each solution is a good start for the next, weaker
    # penalty (the usual regularisation-path order).
    order = np.sort(l2s)[::-1]
    tr, va = jnp.asarray(train_idx), jnp.asarray(val_idx)
    params, stats = _path(
        xs[tr],
        ys[tr],
        xs[va],
        ys[va],
        jnp.asarray(order, jnp.float32),
        params,
        pre,
        basis,
        jnp.float32(gtol),
        jnp.int32(max_iter),
    )
    accs, iters, evals, values, gmaxes = (np.asarray(v) for v in stats)
    chosen_i = int(np.argmax(accs))  # first max = strongest penalty on ties
    chosen = float(order[chosen_i])
    info["path"] = [
        {
            "l2": float(order[i]),
            "val_top1": float(accs[i]),
            "iters": int(iters[i]),
            "evals": int(evals[i]),
            "value": float(values[i]),
            "gmax": float(gmaxes[i]),
            "converged": bool(gmaxes[i] <= np.float32(gtol)),
        }
        for i in range(order.size)
    ]
    info["val_top1"] = float(accs[chosen_i])
    final = info["path"][chosen_i]
  if l2s.size == 1 or refit:
    params, it, ev, value, gmax = _solve(
        xs, ys, jnp.float32(chosen), params, pre, basis, jnp.float32(gtol), jnp.int32(max_iter)
    )
    info.update(
        iters=int(it), evals=int(ev), value=float(value), gmax=float(gmax), refit=l2s.size > 1
    )
    # float32, as the solver's own stopping test compares it.
    final = {
        "l2": chosen,
        "iters": int(it),
        "converged": bool(np.float32(gmax) <= np.float32(gtol)),
    }
  _report_convergence(info, final, max_iter, gtol)
  weight = _project(params[0], pre, 1)
  if basis is not None:
    weight = jnp.matmul(weight, basis, precision=jax.lax.Precision.HIGHEST)
  info["train_seconds"] = time.perf_counter() - start
  return LinearAttacker(
      weight=weight,
      bias=params[1],
      standardizer=standardizer,
      class_map=class_map,
      l2=chosen,
      info=info,
  )
