"""Tests for privjax.privacy.transforms (PCA, transform specs, Gaussian noise)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from privjax.privacy.transforms import (
    PCA,
    TransformSpec,
    add_gaussian_noise,
    fit_pca,
    load_pca,
    parse_transform,
    save_pca,
)

pytestmark = pytest.mark.unit


def _low_rank(n, d, rank, seed=0, offset=3.0):
  rng = np.random.default_rng(seed)
  scales = np.linspace(3.0, 1.0, rank)
  a = rng.normal(size=(n, rank)) * scales
  b = np.linalg.qr(rng.normal(size=(d, rank)))[0].T  # orthonormal rows
  return (a @ b + offset).astype(np.float32)


@pytest.mark.parametrize("n,d", [(200, 30), (20, 64)])  # covariance path, Gram path
def test_roundtrip_exact_at_true_rank_and_error_decreases(n, d):
  rank = 5
  x = _low_rank(n, d, rank)
  errs = []
  for k in range(1, rank + 1):
    pca = fit_pca(x, k)
    rec = np.asarray(pca.inverse(pca.apply(x)))
    errs.append(float(np.mean((rec - x) ** 2)))
  assert errs[-1] < 1e-9
  assert all(e1 > e2 for e1, e2 in zip(errs, errs[1:])), errs
  assert errs[0] > 0.1  # rank-1 truncation must lose the other 4 directions


@pytest.mark.parametrize("n,d,k", [(300, 20, 20), (15, 40, 15), (100, 50, 7)])
def test_components_orthonormal_and_sorted(n, d, k):
  x = np.random.default_rng(1).normal(size=(n, d)).astype(np.float32)
  pca = fit_pca(x, k)
  c = np.asarray(pca.components, np.float64)
  assert c.shape == (k, d) and pca.components.dtype == np.float32
  np.testing.assert_allclose(c @ c.T, np.eye(k), atol=1e-5)
  ev = np.asarray(pca.explained_variance)
  assert np.all(np.diff(ev) <= 1e-6)


def test_matches_numpy_svd_and_sign_convention():
  x = np.random.default_rng(2).normal(size=(80, 12)).astype(np.float32)
  x[:, 0] *= 5.0
  pca = fit_pca(x, 4)
  xc = x.astype(np.float64) - x.mean(0, dtype=np.float64)
  _, s, vt = np.linalg.svd(xc, full_matrices=False)
  np.testing.assert_allclose(np.asarray(pca.explained_variance), s[:4] ** 2 / 79, rtol=1e-5)
  comps = np.asarray(pca.components)
  # same subspace up to sign, and sign fixed so the biggest entry is positive
  np.testing.assert_allclose(np.abs(comps), np.abs(vt[:4]), atol=1e-5)
  for row in comps:
    assert row[np.argmax(np.abs(row))] > 0


def test_projection_is_frozen():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(100, 10)).astype(np.float32) + 2.0
  b = rng.normal(size=(7, 10)).astype(np.float32) * 4.0 - 5.0  # different mean/scale
  pca = fit_pca(a, 3)
  manual = (b.astype(np.float64) - a.mean(0, dtype=np.float64)) @ np.asarray(
      pca.components, np.float64
  ).T
  np.testing.assert_allclose(np.asarray(pca.apply(b)), manual, atol=1e-4)
  np.testing.assert_allclose(np.asarray(pca.mean), a.mean(0), atol=1e-6)
  # jitted and pytree-passed application agree with the eager one
  np.testing.assert_allclose(
      np.asarray(jax.jit(lambda p, v: p.apply(v))(pca, b)), manual, atol=1e-4
  )


def test_spatial_shapes_and_save_load(tmp_path):
  x = _low_rank(60, 4 * 3 * 2, 6, seed=4).reshape(60, 4, 3, 2)
  pca = fit_pca(x, 6)
  assert pca.feature_shape == (4, 3, 2)
  z = pca.apply(x)
  assert z.shape == (60, 6)
  rec = pca.inverse(z)
  assert rec.shape == (60, 4, 3, 2)
  np.testing.assert_allclose(np.asarray(rec), x, atol=1e-4)

  path = tmp_path / "proj.npz"
  save_pca(pca, path)
  loaded = load_pca(path)
  assert loaded.feature_shape == pca.feature_shape
  for key, arr in pca.to_arrays().items():
    np.testing.assert_array_equal(loaded.to_arrays()[key], arr)
  np.testing.assert_array_equal(np.asarray(loaded.apply(x)), np.asarray(z))

  with pytest.raises(ValueError, match="24"):
    pca.apply(np.zeros((2, 5), np.float32))
  bad = pca.to_arrays()
  bad["feature_shape"] = np.array([5, 5])
  with pytest.raises(ValueError, match="feature_shape"):
    PCA.from_arrays(bad)


def test_k_too_large_raises_naming_k_d_n():
  x = np.zeros((50, 8), np.float32)
  with pytest.raises(ValueError) as e:
    fit_pca(x, 9)
  msg = str(e.value)
  assert "k=9" in msg and "D=8" in msg and "N=50" in msg and "\n" not in msg
  with pytest.raises(ValueError, match="N=5"):
    fit_pca(np.zeros((5, 8), np.float32), 6)
  with pytest.raises(ValueError):
    fit_pca(x, 0)


def test_parse_transform():
  assert parse_transform("none") == TransformSpec("none", None)
  assert parse_transform("pca:16") == TransformSpec("pca", 16)
  assert parse_transform(" pca:3 ") == TransformSpec("pca", 3)
  assert str(parse_transform("pca:16")) == "pca:16"
  for bad in ["", "pca", "pca:", "pca:0", "pca:-2", "pca:1.5", "PCA:4", "noise:1", "pca:4:5"]:
    with pytest.raises(ValueError, match="valid forms"):
      parse_transform(bad)


def test_noise_zero_variance_is_identity_and_negative_raises():
  z = jnp.asarray(np.random.default_rng(5).normal(size=(4, 6)).astype(np.float32))
  out = add_gaussian_noise(jax.random.PRNGKey(0), z, 0.0)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(z))
  with pytest.raises(ValueError):
    add_gaussian_noise(jax.random.PRNGKey(0), z, -0.1)


def test_noise_variance_and_determinism():
  z = jnp.full((200, 500), 2.0, jnp.float32)
  key = jax.random.PRNGKey(7)
  out = np.asarray(add_gaussian_noise(key, z, 0.25), np.float64)
  noise = out - 2.0
  assert abs(noise.mean()) < 0.005
  assert abs(noise.var() - 0.25) < 0.005  # 1e5 samples: sd of var estimate ~1.1e-3
  np.testing.assert_array_equal(out, np.asarray(add_gaussian_noise(key, z, 0.25)))
  other = np.asarray(add_gaussian_noise(jax.random.PRNGKey(8), z, 0.25))
  assert not np.array_equal(out, other)
  # traced variance goes through the same formula
  jitted = np.asarray(jax.jit(add_gaussian_noise)(key, z, 0.25))
  np.testing.assert_allclose(jitted, out, atol=1e-6)


def _decaying(n, d, seed):
  rng = np.random.default_rng(seed)
  sv = np.arange(1, d + 1) ** -1.0
  basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
  return ((rng.normal(size=(n, d)) * sv) @ basis.T + 0.5).astype(np.float32)


@pytest.mark.parametrize("n,d", [(400, 120), (90, 200)])
def test_randomized_matches_exact(n, d):
  x = _decaying(n, d, seed=6)
  exact = fit_pca(x, 8, method="exact")
  rand = fit_pca(x, 8, method="randomized")
  np.testing.assert_allclose(
      np.asarray(rand.explained_variance), np.asarray(exact.explained_variance), rtol=1e-3
  )
  cos = np.abs(np.sum(np.asarray(exact.components) * np.asarray(rand.components), axis=1))
  assert cos.min() > 0.999
  c = np.asarray(rand.components, np.float64)
  np.testing.assert_allclose(c @ c.T, np.eye(8), atol=1e-5)
  again = fit_pca(x, 8, method="randomized")
  np.testing.assert_array_equal(np.asarray(again.components), np.asarray(rand.components))
  # exact recovery of genuinely low-rank data
  lr = _low_rank(n, d, 4, seed=7)
  p = fit_pca(lr, 4, method="randomized")
  np.testing.assert_allclose(np.asarray(p.inverse(p.apply(lr))), lr, atol=1e-4)
  with pytest.raises(ValueError, match="method"):
    fit_pca(x, 8, method="svd")


def test_truncate_equals_refit():
  x = _decaying(200, 30, seed=8)
  full = fit_pca(x, 10, method="exact")
  small = fit_pca(x, 3, method="exact")
  t = full.truncate(3)
  np.testing.assert_allclose(np.asarray(t.components), np.asarray(small.components), atol=1e-5)
  np.testing.assert_allclose(np.asarray(t.apply(x)), np.asarray(small.apply(x)), atol=1e-5)
  with pytest.raises(ValueError):
    full.truncate(11)
