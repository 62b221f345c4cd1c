"""Principal component analysis of cut features: one PCA type, its fits, and where they read from.

Lives here:
  * ``PCA`` -- a frozen linear projection (mean, orthonormal components) fitted once on training
    features; ``apply`` maps ``[N, *feature_shape]`` to ``[N, k]`` and ``inverse`` maps back. It is
    a JAX pytree, so it can be passed straight into jitted functions (the device's deployed
    transform, the cloud head, white-box inversion).
  * Row sources: a fit reads features through ``batches(rows, batch_rows)`` and
    ``columns(rows, start, stop)``. ``ArrayRows`` wraps an in-memory array; a feature store on disk
    (``privjax.attacks.shards.FeatureStore``) has the same methods, so every fit below runs on
    either, in memory bounded by ``memory_budget`` (bytes; ``None``: blocks of 2,048 rows or
    columns).
  * ``fit_pca(data, k, method=...)``, three ways to the same PCA:
      - ``'covariance'``: the ``D x D`` covariance of the centred rows, one pass over row batches,
        then its top eigenvectors. Exact; for small D.
      - ``'gram'``: the ``N x N`` Gram matrix of the centred rows, one pass over column blocks (each
        block holds every row of its columns, so it is centred exactly), its top eigenvectors U,
        and the components ``U^T X_c / sqrt(lambda)`` in a second pass. Exact; for small N and
        large D (conv features). ``gram_matrix`` / ``gram_eigen`` / ``gram_codes`` expose the Gram
        matrix itself, from which the attacker's own PCA of every size is read without touching
        the features again (``privjax.attacks.streaming``).
      - ``'randomized'``: randomized subspace iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4)
        over row batches, ``2 + 2 n_iter`` passes; never forms an N x N or D x D matrix.
      - ``'auto'``: randomized when ``min(N, D) > 4096`` and ``k <= min(N, D) / 8``, else the
        exact method with the smaller matrix.
    All return components as orthonormal rows, sign-normalised (largest-magnitude entry positive,
    so stored projections are reproducible across LAPACK builds), and the explained variance with
    divisor ``N - 1``.
  * ``project`` -- ``pca.apply`` on a row source, a batch at a time; ``save_pca`` / ``load_pca`` --
    ``.npz`` persistence (local or a URI), so the projection that was evaluated can be stored with
    a run and shipped to the device.

Must not import ``privjax.models``, ``privjax.train``, ``privjax.data`` or ``privjax.attacks``: the
PCA is shared by training, evaluation, attacks and export.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any, Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from privjax import paths
from privjax.errors import EvalError

# Full-precision matmuls: on GPUs the default float32 matmul may use TF32, which would make the
# apply/inverse round trip (and the privacy numbers computed from it) depend on the accelerator.
_HIGHEST = jax.lax.Precision.HIGHEST
METHODS = ('auto', 'covariance', 'gram', 'randomized')
# Above this size of the smaller Gram/covariance matrix, LAPACK's O(n^3) eigensolver takes minutes
# on a few CPU cores: 'auto' switches to the randomized method, and the Gram method's eigenvectors
# come from subspace iteration instead.
EXACT_EIGH_MAX = 4096
DEFAULT_BLOCK = 2048


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: array fields make == ambiguous
class PCA:
  """Frozen PCA projection.

  Attributes:
    mean: ``[D]`` float32, the training-feature mean.
    components: ``[k, D]`` float32 with orthonormal rows, ordered by decreasing explained
      variance.
    explained_variance: ``[k]`` float32, variance of the training features along each component
      (sample variance, divisor ``N - 1``).
    feature_shape: per-sample feature shape before flattening (e.g. ``(H, W, C)``).
  """

  mean: Any
  components: Any
  explained_variance: Any
  feature_shape: tuple[int, ...]

  @property
  def k(self) -> int:
    return int(self.components.shape[0])

  @property
  def dim(self) -> int:
    return int(self.components.shape[1])

  # feature_shape is static metadata; unflatten bypasses __init__ because JAX may rebuild the node
  # with non-array leaves (tracers, None, sharding specs).
  def tree_flatten(self):
    return (self.mean, self.components, self.explained_variance), (tuple(self.feature_shape),)

  @classmethod
  def tree_unflatten(cls, aux, children):
    obj = object.__new__(cls)
    for name, value in zip(('mean', 'components', 'explained_variance'), children):
      object.__setattr__(obj, name, value)
    object.__setattr__(obj, 'feature_shape', aux[0])
    return obj

  def _flatten_input(self, features):
    x = jnp.asarray(features)
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] != self.dim:
      raise ValueError(
          f'PCA expects {self.dim} features per sample (feature_shape={self.feature_shape}), '
          f'got input of shape {tuple(jnp.shape(features))}'
      )
    return x

  def apply(self, features):
    """Project ``[N, ...]`` features to ``[N, k]`` (float32)."""
    x = self._flatten_input(features).astype(jnp.float32)
    mean = jnp.asarray(self.mean, jnp.float32)
    comps = jnp.asarray(self.components, jnp.float32)
    return jnp.matmul(x - mean, comps.T, precision=_HIGHEST)

  def inverse(self, z):
    """Map ``[N, k]`` codes back to ``[N, *feature_shape]``."""
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[1] != self.k:
      raise ValueError(f'PCA.inverse expects shape [N, {self.k}], got {tuple(z.shape)}')
    mean = jnp.asarray(self.mean, jnp.float32)
    comps = jnp.asarray(self.components, jnp.float32)
    x = jnp.matmul(z, comps, precision=_HIGHEST) + mean
    return x.reshape((z.shape[0],) + tuple(self.feature_shape))

  def truncate(self, k: int) -> PCA:
    """The leading ``k`` components. For an exact fit this equals refitting with ``k`` (PCA
    subspaces are nested), so a sweep over ``pca:k`` needs one fit with the largest ``k``."""
    if not 1 <= k <= self.k:
      raise ValueError(f'cannot truncate a {self.k}-component PCA to k={k}')
    return PCA(self.mean, self.components[:k], self.explained_variance[:k], self.feature_shape)

  def to_arrays(self) -> dict[str, np.ndarray]:
    return {
        'mean': np.asarray(self.mean, np.float32),
        'components': np.asarray(self.components, np.float32),
        'explained_variance': np.asarray(self.explained_variance, np.float32),
        'feature_shape': np.asarray(self.feature_shape, np.int64),
    }

  @classmethod
  def from_arrays(cls, d) -> PCA:
    mean = np.asarray(d['mean'], np.float32)
    components = np.asarray(d['components'], np.float32)
    explained_variance = np.asarray(d['explained_variance'], np.float32)
    feature_shape = tuple(int(s) for s in np.asarray(d['feature_shape']).reshape(-1))
    if components.ndim != 2 or mean.shape != (components.shape[1],):
      raise ValueError(f'inconsistent PCA arrays: mean {mean.shape}, components {components.shape}')
    if explained_variance.shape != (components.shape[0],):
      raise ValueError(
          f'inconsistent PCA arrays: explained_variance {explained_variance.shape}, '
          f'components {components.shape}'
      )
    if math.prod(feature_shape) != components.shape[1]:
      raise ValueError(f'feature_shape {feature_shape} does not match D={components.shape[1]}')
    return cls(mean, components, explained_variance, feature_shape)


# ---------------------------------------------------------------------------------------------
# Row sources.


class Rows(Protocol):
  """What the fits read: rows of [N, D] features by global index, in bounded pieces."""

  feature_shape: tuple[int, ...]

  @property
  def dim(self) -> int:
    ...

  @property
  def dtype(self) -> np.dtype:
    ...

  def batches(self, rows, batch_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    ...

  def columns(self, rows, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    ...


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayRows:
  """An in-memory ``[N, ...]`` array as a row source (the interface of a feature store)."""

  x: np.ndarray  # [N, D]
  feature_shape: tuple[int, ...]

  @classmethod
  def of(cls, features) -> ArrayRows:
    x = np.asarray(features)
    if x.ndim < 2:
      raise ValueError(f'expected features of shape [N, ...], got {x.shape}')
    return cls(x.reshape(x.shape[0], -1), tuple(int(s) for s in x.shape[1:]))

  @property
  def dim(self) -> int:
    return int(self.x.shape[1])

  @property
  def dtype(self) -> np.dtype:
    return self.x.dtype

  @property
  def num_rows(self) -> int:
    return int(self.x.shape[0])

  def rows(self, rows) -> np.ndarray:
    return self.x[np.asarray(rows, np.int64)]

  def columns(self, rows, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    block = self.x[np.asarray(rows, np.int64), start:stop]
    if out is None:
      return block.astype(np.float32)
    out[...] = block
    return out

  def batches(self, rows, batch_rows: int, *, shuffle_seed: int | None = None):
    rows = np.asarray(rows, np.int64)
    order = np.arange(rows.size)
    if shuffle_seed is not None:
      order = np.random.default_rng(shuffle_seed).permutation(rows.size)
    for s in range(0, rows.size, batch_rows):
      pos = np.sort(order[s : s + batch_rows])
      yield pos, self.x[rows[pos]]


def _source(data, rows=None) -> tuple[Any, np.ndarray]:
  """(row source, global row indices) of an array or a row source."""
  src = data if hasattr(data, 'batches') else ArrayRows.of(data)
  if rows is None:
    rows = np.arange(src.num_rows)
  return src, np.asarray(rows, np.int64)


def _row_batch(src, budget, fixed_bytes: int = 0) -> int:
  """Rows per batch: a float32 copy beside the source's own, next to ``fixed_bytes``."""
  if budget is None:
    return DEFAULT_BLOCK
  left = int(budget) - int(fixed_bytes)
  per_row = src.dim * (4 + np.dtype(src.dtype).itemsize)
  if left < per_row:
    raise EvalError(
        f'memory budget {budget} bytes cannot hold one row of {src.dim} features beside '
        f'{fixed_bytes} bytes of the fit; raise it'
    )
  return int(left // per_row)


def _column_block(src, n_rows: int, budget, fixed_bytes: int) -> int:
  """Columns per block: a float64 block of every row beside ``fixed_bytes``."""
  if budget is None:
    return min(src.dim, DEFAULT_BLOCK)
  left = int(budget) - int(fixed_bytes)
  per_column = n_rows * (8 + np.dtype(src.dtype).itemsize)
  if left < per_column:
    raise EvalError(
        f'memory budget {budget} bytes cannot hold the {n_rows} x {n_rows} Gram matrix '
        f'({fixed_bytes} bytes with its temporaries) and a column of the features; raise it'
    )
  return int(min(src.dim, left // per_column))


def _column_blocks(src, rows, budget, fixed_bytes):
  """(start, stop, float64 block [len(rows), stop - start]) over every column of ``rows``."""
  cols = _column_block(src, rows.size, budget, fixed_bytes)
  for c0 in range(0, src.dim, cols):
    c1 = min(src.dim, c0 + cols)
    yield c0, c1, src.columns(rows, c0, c1).astype(np.float64)


def _mean(src, rows, batch) -> np.ndarray:
  total = np.zeros(src.dim, np.float64)
  for _, x in src.batches(rows, batch):
    total += np.asarray(x).sum(axis=0, dtype=np.float64)
  return total / rows.size


# ---------------------------------------------------------------------------------------------
# Eigenvectors.


def sign_fix(components: np.ndarray) -> np.ndarray:
  """Each row flipped so that its largest-magnitude entry is positive (solvers return components
  up to sign, and the sign differs between LAPACK builds)."""
  idx = np.argmax(np.abs(components), axis=1)
  signs = np.sign(components[np.arange(components.shape[0]), idx])
  signs[signs == 0] = 1.0
  return components * signs[:, None]


def top_eigen(m: np.ndarray, k: int, *, seed: int = 0, n_iter: int = 7):
  """Leading ``k`` eigenpairs of the symmetric PSD ``m``, descending (eigenvalues clipped at 0).

  Up to ``EXACT_EIGH_MAX`` rows LAPACK (a subset solve when k is small, which skips most of the
  back-transformation); above, where its O(n^3) reduction takes hours on a few cores, subspace
  iteration with ``k + max(10, k // 2)`` directions and ``n_iter`` products, then the exact
  eigen-decomposition of the small projected matrix.
  """
  n = m.shape[0]
  if n <= EXACT_EIGH_MAX:
    if k <= max(1, n // 8):
      w, v = scipy.linalg.eigh(m, subset_by_index=[n - k, n - 1], check_finite=False)
    else:
      w, v = scipy.linalg.eigh(m, driver='evd', check_finite=False)
      w, v = w[n - k :], v[:, n - k :]
  else:
    width = min(n, k + max(10, k // 2))
    q = np.random.default_rng(seed).standard_normal((n, width))
    for _ in range(n_iter + 1):
      q = np.linalg.qr(m @ q)[0]
    w, v = np.linalg.eigh(q.T @ m @ q)
    w, v = w[-k:], q @ v[:, -k:]
  order = np.argsort(w)[::-1]
  return np.clip(w[order], 0.0, None), v[:, order]


def _pca(mean, components, eigvals, n, feature_shape) -> PCA:
  return PCA(
      mean=np.asarray(mean, np.float32),
      components=sign_fix(np.asarray(components, np.float64)).astype(np.float32),
      explained_variance=(np.asarray(eigvals, np.float64) / max(n - 1, 1)).astype(np.float32),
      feature_shape=tuple(feature_shape),
  )


# ---------------------------------------------------------------------------------------------
# The Gram matrix.


def gram_matrix(src, rows, center_rows, *, memory_budget=None):
  """(G, mean): ``G[a, b] = (x_a - m) . (x_b - m)`` over ``rows``, float64; ``m`` the mean of
  ``center_rows`` (positions in ``rows``: the PCA's training rows; other rows are only projected).
  One pass over column blocks, each centred exactly before its product."""
  rows = np.asarray(rows, np.int64)
  center_rows = np.asarray(center_rows, np.int64)
  n = rows.size
  # G itself and one block product beside the block (the eigen-solver's copies come later).
  gram = np.zeros((n, n), np.float64)
  mean = np.empty(src.dim, np.float64)
  for c0, c1, b in _column_blocks(src, rows, memory_budget, n * n * 16):
    m = b[center_rows].mean(axis=0)
    mean[c0:c1] = m
    b -= m
    gram += b @ b.T
  return gram, mean


def _block(gram, a, t):
  if _is_range(a) and _is_range(t):
    return gram[a[0] : a[0] + a.size, t[0] : t[0] + t.size]
  return gram[np.ix_(a, t)]


def _is_range(idx) -> bool:
  return idx.size > 0 and idx[-1] - idx[0] + 1 == idx.size and bool(np.all(np.diff(idx) == 1))


def _centered(gram, a, t):
  """Gram block [a, t] re-centred on the mean of rows ``t`` (translation-invariant formula)."""
  r_t = _block(gram, t, t).mean(axis=0)
  g = _block(gram, a, t)
  return g - g.mean(axis=1)[:, None] - r_t[None, :] + r_t.mean()


def gram_eigen(gram, t, k, *, seed: int = 0, n_iter: int = 7):
  """Leading ``k`` eigenpairs (descending) of the Gram of rows ``t`` centred on their own mean."""
  return top_eigen(_centered(gram, t, t), k, seed=seed, n_iter=n_iter)


def gram_codes(gram, a, t, eigvals, eigvecs):
  """Projections of rows ``a`` on the PCA of rows ``t``: [len(a), k], float64."""
  sd = np.sqrt(np.maximum(eigvals, np.finfo(np.float64).tiny))
  return _centered(gram, a, t) @ eigvecs / sd


# ---------------------------------------------------------------------------------------------
# The fits.


def _fit_covariance(src, rows, k, budget, seed):
  d = src.dim
  batch = _row_batch(src, budget, 2 * d * d * 8)
  mean = _mean(src, rows, batch)
  cov = np.zeros((d, d), np.float64)
  for _, x in src.batches(rows, batch):
    xb = np.asarray(x, np.float64) - mean
    cov += xb.T @ xb
  w, v = top_eigen(cov, k, seed=seed)
  return _pca(mean, v.T, w, rows.size, src.feature_shape)


def _fit_gram(src, rows, k, budget, seed):
  n = rows.size
  t = np.arange(n)
  gram, mean = gram_matrix(src, rows, t, memory_budget=budget)
  w, u = gram_eigen(gram, t, k, seed=seed)
  del gram
  # X_c^T u_i has norm sqrt(lambda_i); QR normalises it and, for (near-)zero eigenvalues where
  # dividing by sqrt(lambda) would blow up, still yields orthonormal directions.
  v = np.empty((src.dim, k), np.float64)
  for c0, c1, b in _column_blocks(src, rows, budget, k * n * 8 + k * src.dim * 8):
    v[c0:c1] = (b - mean[c0:c1]).T @ u
  q, r = np.linalg.qr(v)
  q = q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]
  return _pca(mean, q.T, w, n, src.feature_shape)


def randomized_width(n: int, d: int, k: int, n_oversamples: int | None = None) -> int:
  """Directions the randomized fit carries: ``k`` plus ``max(10, k // 2)`` oversamples."""
  extra = max(10, k // 2) if n_oversamples is None else int(n_oversamples)
  return min(n, d, k + extra)


def _fit_randomized(src, rows, k, budget, seed, n_iter, n_oversamples, progress):
  # The mean is taken in the first pass and subtracted algebraically (X_c A = X A - 1 m^T A).
  # Iterates are re-orthonormalised with QR in float64 between passes; the passes themselves are
  # float32 products (at conv4_3 size a float64 pass costs twice the time and memory).
  n, d = rows.size, src.dim
  report = progress or (lambda name: None)
  width = randomized_width(n, d, k, n_oversamples)
  batch = min(n, _row_batch(src, budget, 2 * d * width * 4 + 2 * n * width * 8))
  omega = np.random.default_rng(seed).standard_normal((d, width), dtype=np.float32)
  total = np.zeros(d, np.float64)
  y = np.empty((n, width), np.float32)
  for pos, x in src.batches(rows, batch):
    xf = np.asarray(x, np.float32)
    total += xf.sum(axis=0, dtype=np.float64)
    y[pos] = xf @ omega
    # Freed before the next batch is read, so that one batch and its float32 copy are held.
    del x, xf
    report('batch')
  mean = (total / n).astype(np.float32)
  y -= mean @ omega
  del omega
  report('pass')

  def right(q):  # X_c^T q: [D, width]
    z = np.zeros((d, q.shape[1]), np.float32)
    for pos, x in src.batches(rows, batch):
      z += np.asarray(x, np.float32).T @ q[pos]
      report('batch')
    z -= np.outer(mean, q.sum(axis=0))
    report('pass')
    return z

  def left(z):  # X_c z: [N, width]
    out = np.empty((n, z.shape[1]), np.float32)
    for pos, x in src.batches(rows, batch):
      out[pos] = np.asarray(x, np.float32) @ z
      report('batch')
    report('pass')
    return out - mean @ z

  def orthonormal(a):
    return np.linalg.qr(a.astype(np.float64))[0].astype(np.float32)

  for _ in range(n_iter):
    y = left(orthonormal(right(orthonormal(y))))
  b = right(orthonormal(y)).T.astype(np.float64)  # Q^T X_c: [width, D]
  w, u = np.linalg.eigh(b @ b.T)  # B B^T = U S^2 U^T
  order = np.argsort(w)[::-1][:k]
  w, u = np.clip(w[order], 0.0, None), u[:, order]
  components = (u.T @ b) / np.sqrt(np.maximum(w, np.finfo(np.float64).tiny))[:, None]
  return _pca(mean, components, w, n, src.feature_shape)


def fit_pca(
    data,
    k: int,
    *,
    rows=None,
    method: str = 'auto',
    memory_budget: int | None = None,
    seed: int = 0,
    n_iter: int = 7,
    n_oversamples: int | None = None,
    progress=None,
) -> PCA:
  """A rank-``k`` PCA of ``data``: an array ``[N, ...]`` or a row source (its ``rows``).

  ``method``: ``'covariance'``, ``'gram'``, ``'randomized'`` or ``'auto'`` (module docstring).
  The randomized method takes ``n_iter`` power iterations, ``n_oversamples`` extra directions and
  ``seed`` (so it is deterministic); ``progress(name)``, if given, is called with ``'batch'`` after
  each batch it reads and ``'pass'`` after each pass. ``memory_budget`` bounds the bytes a fit
  holds besides its outputs (``None``: fixed blocks). Raises ``ValueError`` if ``k`` is not in
  ``[1, min(N, D)]`` or the features are not finite.
  """
  if method not in METHODS:
    raise ValueError(f'unknown PCA method {method!r}; valid: {", ".join(map(repr, METHODS))}')
  src, rows = _source(data, rows)
  n, d = rows.size, src.dim
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(n, d):
    raise ValueError(f'PCA k={k} must be an integer in [1, min(N, D)] with D={d}, N={n}')
  k = int(k)
  if isinstance(src, ArrayRows) and not np.all(np.isfinite(src.x[rows])):
    raise ValueError('fit_pca: features contain NaN or inf')
  if method == 'auto':
    small = min(n, d)
    if small > EXACT_EIGH_MAX and k <= small // 8:
      method = 'randomized'
    else:
      method = 'covariance' if d <= n else 'gram'
  if method == 'covariance':
    return _fit_covariance(src, rows, k, memory_budget, seed)
  if method == 'gram':
    return _fit_gram(src, rows, k, memory_budget, seed)
  return _fit_randomized(src, rows, k, memory_budget, seed, n_iter, n_oversamples, progress)


def project(pca: PCA, data, rows=None, *, memory_budget: int | None = None) -> np.ndarray:
  """``pca.apply`` on a row source's ``rows`` (or an array), a batch at a time: [N, k] float32."""
  src, rows = _source(data, rows)
  comps = np.asarray(pca.components, np.float32).T
  mean_proj = np.asarray(pca.mean, np.float32) @ comps
  batch = min(max(rows.size, 1), _row_batch(src, memory_budget, comps.nbytes))
  out = np.empty((rows.size, comps.shape[1]), np.float32)
  for pos, x in src.batches(rows, batch):
    out[pos] = np.asarray(x, np.float32) @ comps - mean_proj
  return out


def save_pca(pca: PCA, path) -> None:
  """Write ``pca`` to ``path`` (local or a URI, privjax.paths) as ``.npz``, the name as given."""
  # A file object stops np.savez from appending '.npz' to the name; np.savez seeks, which an object
  # store's write stream cannot, so the archive is built in memory and written in one piece,
  # atomically: a kill or a full disk in the middle leaves no part of a cache a later run reads.
  buffer = io.BytesIO()
  np.savez(buffer, **pca.to_arrays())
  paths.write_atomic(path, buffer.getvalue())


def load_pca(path) -> PCA:
  """The PCA `save_pca` wrote to ``path`` (local or a URI)."""
  with np.load(io.BytesIO(paths.as_path(path).read_bytes())) as d:
    return PCA.from_arrays(d)
