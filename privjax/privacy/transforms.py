"""Feature transforms applied to the cut features before they leave the device.

Lives here:
  * ``PCA`` -- a frozen linear projection (mean, orthonormal components) fitted
    once on training features; ``apply`` maps ``[N, *feature_shape]`` to
    ``[N, k]`` and ``inverse`` maps back (reshaping to the spatial shape).
    It is a JAX pytree, so it can be passed straight into jitted functions.
  * ``fit_pca`` / ``save_pca`` / ``load_pca`` -- fitting in float64 on the CPU
    with numpy/scipy (exact eigendecomposition of the smaller Gram or
    covariance matrix, or deterministic randomized subspace iteration for
    large inputs), and ``.npz`` persistence so the exact projection that was
    evaluated can be stored with a run and shipped to the device.
  * ``TransformSpec`` / ``parse_transform`` -- the ``'none' | 'pca:k'`` config
    strings.
  * ``add_gaussian_noise`` -- the isotropic Gaussian perturbation, applied to
    the *transformed* features.

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``:
transforms are shared by training, evaluation and attacks and have to stay
free of model/dataset dependencies (and import cycles).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from privjax import paths

__all__ = [
    "PCA",
    "fit_pca",
    "save_pca",
    "load_pca",
    "TransformSpec",
    "parse_transform",
    "add_gaussian_noise",
]

# Full-precision matmuls: on GPUs the default float32 matmul may use TF32,
# which would make the apply/inverse round trip (and the privacy numbers
# computed from it) depend on the accelerator.
_HIGHEST = jax.lax.Precision.HIGHEST


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: array fields make == ambiguous
class PCA:
  """Frozen PCA projection.

  Attributes:
    mean: ``[D]`` float32, the training-feature mean.
    components: ``[k, D]`` float32 with orthonormal rows, ordered by
      decreasing explained variance.
    explained_variance: ``[k]`` float32, variance of the training features
      along each component (sample variance, divisor ``N - 1``).
    feature_shape: per-sample feature shape before flattening (e.g.
      ``(H, W, C)``); ``prod(feature_shape) == D``.
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

  # Pytree protocol. feature_shape is static metadata; unflatten bypasses
  # __init__ because JAX may rebuild the node with non-array leaves
  # (tracers, None, sharding specs).
  def tree_flatten(self):
    return (self.mean, self.components, self.explained_variance), (tuple(self.feature_shape),)

  @classmethod
  def tree_unflatten(cls, aux, children):
    obj = object.__new__(cls)
    for name, value in zip(("mean", "components", "explained_variance"), children):
      object.__setattr__(obj, name, value)
    object.__setattr__(obj, "feature_shape", aux[0])
    return obj

  def _flatten_input(self, features):
    x = jnp.asarray(features)
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] != self.dim:
      raise ValueError(
          f"PCA expects {self.dim} features per sample (feature_shape={self.feature_shape}), "
          f"got input of shape {tuple(jnp.shape(features))}"
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
      raise ValueError(f"PCA.inverse expects shape [N, {self.k}], got {tuple(z.shape)}")
    mean = jnp.asarray(self.mean, jnp.float32)
    comps = jnp.asarray(self.components, jnp.float32)
    x = jnp.matmul(z, comps, precision=_HIGHEST) + mean
    return x.reshape((z.shape[0],) + tuple(self.feature_shape))

  def truncate(self, k: int) -> "PCA":
    """The leading ``k`` components.  For an exact fit this equals
    refitting with ``k`` (PCA subspaces are nested), so a sweep over
    ``pca:k`` needs only one fit with the largest ``k``."""
    if not 1 <= k <= self.k:
      raise ValueError(f"cannot truncate a {self.k}-component PCA to k={k}")
    return PCA(self.mean, self.components[:k], self.explained_variance[:k], self.feature_shape)

  def to_arrays(self) -> dict[str, np.ndarray]:
    return {
        "mean": np.asarray(self.mean, np.float32),
        "components": np.asarray(self.components, np.float32),
        "explained_variance": np.asarray(self.explained_variance, np.float32),
        "feature_shape": np.asarray(self.feature_shape, np.int64),
    }

  @classmethod
  def from_arrays(cls, d) -> "PCA":
    mean = np.asarray(d["mean"], np.float32)
    components = np.asarray(d["components"], np.float32)
    explained_variance = np.asarray(d["explained_variance"], np.float32)
    feature_shape = tuple(int(s) for s in np.asarray(d["feature_shape"]).reshape(-1))
    if components.ndim != 2 or mean.shape != (components.shape[1],):
      raise ValueError(f"inconsistent PCA arrays: mean {mean.shape}, components {components.shape}")
    if explained_variance.shape != (components.shape[0],):
      raise ValueError(
          f"inconsistent PCA arrays: explained_variance {explained_variance.shape}, "
          f"components {components.shape}"
      )
    if math.prod(feature_shape) != components.shape[1]:
      raise ValueError(f"feature_shape {feature_shape} does not match D={components.shape[1]}")
    return cls(mean, components, explained_variance, feature_shape)


def _sign_fix(components: np.ndarray) -> np.ndarray:
  """Flip each row so its largest-magnitude entry is positive.

  Eigen/SVD solvers return components up to sign, and the sign differs
  between LAPACK builds; fixing it makes stored projections reproducible.
  """
  idx = np.argmax(np.abs(components), axis=1)
  signs = np.sign(components[np.arange(components.shape[0]), idx])
  signs[signs == 0] = 1.0
  return components * signs[:, None]


def _top_eigh(m: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Top-k eigenpairs of a symmetric PSD matrix, in decreasing order."""
  n = m.shape[0]
  # Selecting a subset (MRRR) skips most of the back-transformation work
  # when k << n; for large k the divide-and-conquer full solve is faster.
  if k <= max(1, n // 8):
    w, v = scipy.linalg.eigh(m, subset_by_index=[n - k, n - 1], check_finite=False)
  else:
    w, v = scipy.linalg.eigh(m, driver="evd", check_finite=False)
    w, v = w[n - k :], v[:, n - k :]
  return w[::-1], v[:, ::-1]


# Above this size of the smaller Gram/covariance matrix, the O(n^3) dense
# eigensolver takes minutes on a few CPU cores, so 'auto' switches to the
# randomized solver when k is small enough for it to pay off.
_AUTO_EXACT_MAX_DIM = 4096


def _centered_matmul(x, mean, a, block_size):
  """``(x - mean) @ a`` in float64, converting ``block_size`` rows at a time."""
  out = np.empty((x.shape[0], a.shape[1]), np.float64)
  for s in range(0, x.shape[0], block_size):
    out[s : s + block_size] = (x[s : s + block_size].astype(np.float64) - mean) @ a
  return out


def _centered_rmatmul(x, mean, b, block_size):
  """``(x - mean).T @ b`` in float64, converting ``block_size`` rows at a time."""
  out = np.zeros((x.shape[1], b.shape[1]), np.float64)
  for s in range(0, x.shape[0], block_size):
    out += (x[s : s + block_size].astype(np.float64) - mean).T @ b[s : s + block_size]
  return out


def _fit_exact(x, mean, k, block_size):
  n, d = x.shape
  if d <= n:
    cov = np.zeros((d, d), np.float64)
    for s in range(0, n, block_size):
      xb = x[s : s + block_size].astype(np.float64) - mean
      cov += xb.T @ xb
    w, v = _top_eigh(cov, k)
    return w, v.T
  gram = np.zeros((n, n), np.float64)
  for s in range(0, d, block_size):
    xb = x[:, s : s + block_size].astype(np.float64) - mean[s : s + block_size]
    gram += xb @ xb.T
  w, u = _top_eigh(gram, k)
  v = np.empty((d, k), np.float64)
  for s in range(0, d, block_size):
    xb = x[:, s : s + block_size].astype(np.float64) - mean[s : s + block_size]
    v[s : s + block_size] = xb.T @ u
  # Xc^T u_i has norm sqrt(lambda_i); QR normalises it and, for
  # (near-)zero eigenvalues where dividing by sqrt(lambda) would blow up,
  # still yields orthonormal directions.
  q, r = np.linalg.qr(v)
  q = q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]
  return w, q.T


def _fit_randomized(x, mean, k, block_size, n_iter, n_oversamples, seed):
  # Halko, Martinsson & Tropp (2011), Alg. 4.4: randomized range finder
  # with power iterations, then an exact SVD of the small projected
  # matrix.  Never forms the N x N or D x D matrix.  Intermediate
  # iterates are re-normalised with LU (as scikit-learn does), which keeps
  # the columns from collapsing onto the top direction at a fraction of
  # the cost of a tall-skinny QR; only the final basis needs to be
  # orthonormal.
  n, d = x.shape
  l = min(k + n_oversamples, n, d)
  rng = np.random.default_rng(seed)

  def lu_normalise(a):
    return scipy.linalg.lu(a, permute_l=True, check_finite=False)[0]

  y = _centered_matmul(x, mean, rng.standard_normal((d, l)), block_size)
  for _ in range(n_iter):
    y = lu_normalise(y)
    y = lu_normalise(_centered_rmatmul(x, mean, y, block_size))
    y = _centered_matmul(x, mean, y, block_size)
  q, _ = np.linalg.qr(y)
  b = _centered_rmatmul(x, mean, q, block_size).T  # Q^T Xc, [l, D]
  _, sv, vt = np.linalg.svd(b, full_matrices=False)
  return sv[:k] ** 2, vt[:k]


def fit_pca(
    features,
    k: int,
    *,
    block_size: int = 2048,
    method: str = "auto",
    n_iter: int = 7,
    n_oversamples: int | None = None,
    seed: int = 0,
) -> PCA:
  """Fit a rank-``k`` PCA on ``features`` of shape ``[N, ...]``.

  ``method``:
    * ``'exact'`` -- eigendecomposition of whichever of the ``D x D``
      covariance and the ``N x N`` Gram matrix is smaller (float64).
    * ``'randomized'`` -- randomized subspace iteration (Halko et al.
      2011) with ``n_iter`` power iterations and ``n_oversamples`` extra
      directions (default ``max(10, k // 2)``), seeded by ``seed``, so it is
      deterministic.  Near-exact for the leading components; much faster
      when ``k << min(N, D)``.
    * ``'auto'`` (default) -- ``'exact'`` unless ``min(N, D) > 4096`` and
      ``k <= min(N, D) / 8``.

  All products are accumulated in float64, ``block_size`` rows (or Gram
  columns) at a time, so the input is never copied to float64 in full.
  Components are sign-normalised (largest-magnitude entry positive).
  Raises ``ValueError`` if ``k > min(N, D)``.
  """
  x = np.asarray(features)
  if x.ndim < 2:
    raise ValueError(f"fit_pca expects features of shape [N, ...], got {x.shape}")
  n = x.shape[0]
  feature_shape = tuple(int(s) for s in x.shape[1:])
  x = x.reshape(n, -1)
  d = x.shape[1]
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k > min(n, d):
    raise ValueError(f"PCA k={k} must be an integer in [1, min(N, D)] with D={d}, N={n}")
  k = int(k)
  if block_size < 1:
    raise ValueError(f"block_size must be positive, got {block_size}")
  if method == "auto":
    small = min(n, d)
    method = "randomized" if small > _AUTO_EXACT_MAX_DIM and k <= small // 8 else "exact"
  if method not in ("exact", "randomized"):
    raise ValueError(f"unknown PCA method {method!r}; valid: 'auto', 'exact', 'randomized'")
  if not np.all(np.isfinite(x)):
    raise ValueError("fit_pca: features contain NaN or inf")

  mean = np.zeros(d, np.float64)
  for s in range(0, n, block_size):
    mean += x[s : s + block_size].sum(axis=0, dtype=np.float64)
  mean /= n

  if method == "exact":
    w, components = _fit_exact(x, mean, k, block_size)
  else:
    oversamples = max(10, k // 2) if n_oversamples is None else int(n_oversamples)
    w, components = _fit_randomized(x, mean, k, block_size, int(n_iter), oversamples, seed)

  w = np.clip(w, 0.0, None)
  components = _sign_fix(components)
  return PCA(
      mean=mean.astype(np.float32),
      components=components.astype(np.float32),
      explained_variance=(w / max(n - 1, 1)).astype(np.float32),
      feature_shape=feature_shape,
  )


def save_pca(pca: PCA, path) -> None:
  """Write ``pca`` to ``path`` (local or a URI, privjax.paths) as ``.npz``, the name as given."""
  # A file object stops np.savez from appending '.npz' to the name; np.savez seeks, which an object
  # store's write stream cannot, so the archive is built in memory and written in one piece.
  # Atomically: a kill or a full disk in the middle leaves no part of a cache that a later
  # evaluation would read.
  buffer = io.BytesIO()
  np.savez(buffer, **pca.to_arrays())
  paths.write_atomic(path, buffer.getvalue())


def load_pca(path) -> PCA:
  """The PCA `save_pca` wrote to ``path`` (local or a URI)."""
  with np.load(io.BytesIO(paths.as_path(path).read_bytes())) as d:
    return PCA.from_arrays(d)


@dataclasses.dataclass(frozen=True)
class TransformSpec:
  """Parsed transform config: ``kind`` is ``'none'`` or ``'pca'``."""

  kind: str
  k: int | None = None

  def __post_init__(self):
    if self.kind == "none":
      if self.k is not None:
        raise ValueError("TransformSpec(kind='none') takes no k")
    elif self.kind == "pca":
      if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
        raise ValueError(f"TransformSpec(kind='pca') needs a positive integer k, got {self.k!r}")
    else:
      raise ValueError(f"unknown transform kind {self.kind!r}; valid kinds: 'none', 'pca'")

  def __str__(self) -> str:
    return "none" if self.kind == "none" else f"pca:{self.k}"


_VALID_FORMS = "valid forms: 'none', 'pca:K' with K a positive integer (e.g. 'pca:16')"


def parse_transform(spec: str) -> TransformSpec:
  """Parse ``'none'`` or ``'pca:K'``; round-trips with ``str(TransformSpec)``."""
  if not isinstance(spec, str):
    raise ValueError(f"transform spec must be a string, got {spec!r}; {_VALID_FORMS}")
  s = spec.strip()
  if s == "none":
    return TransformSpec("none")
  m = re.fullmatch(r"pca:([0-9]+)", s)
  if m and int(m.group(1)) >= 1:
    return TransformSpec("pca", int(m.group(1)))
  raise ValueError(f"invalid transform spec {spec!r}; {_VALID_FORMS}")


def add_gaussian_noise(key, z, variance: float):
  """Return ``z + sqrt(variance) * N(0, I)``; ``variance == 0`` returns ``z``.

  ``variance`` may be a traced value inside ``jit``; the range check then
  only happens when it is concrete.
  """
  z = jnp.asarray(z)
  if not jnp.issubdtype(z.dtype, jnp.floating):
    z = z.astype(jnp.float32)
  try:
    v = float(variance)
  except (TypeError, jax.errors.ConcretizationTypeError):
    v = None
  if v is not None:
    if not math.isfinite(v) or v < 0:
      raise ValueError(f"noise variance must be finite and >= 0, got {variance}")
    if v == 0.0:
      return z
  noise = jax.random.normal(key, z.shape, z.dtype)
  return z + jnp.sqrt(jnp.asarray(variance, z.dtype)) * noise
