"""privjax.privacy.pca: the PCA type and its fits (covariance, Gram, randomized) on arrays and on
feature stores, against numpy's SVD and against each other."""

import jax
import numpy as np
import pytest

from privjax.attacks import shards
from privjax.privacy import pca as pca_lib
from privjax.privacy.pca import (
    PCA,
    ArrayRows,
    fit_pca,
    gram_codes,
    gram_eigen,
    gram_matrix,
    load_pca,
    project,
    save_pca,
)

pytestmark = pytest.mark.unit


def _low_rank(n, d, rank, seed=0, offset=3.0):
  rng = np.random.default_rng(seed)
  scales = np.linspace(3.0, 1.0, rank)
  a = rng.normal(size=(n, rank)) * scales
  b = np.linalg.qr(rng.normal(size=(d, rank)))[0].T  # orthonormal rows
  return (a @ b + offset).astype(np.float32)


@pytest.mark.parametrize("n,d", [(200, 30), (20, 64)])  # covariance path, Gram path ('auto')
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


def _decaying(n, d, seed):
  rng = np.random.default_rng(seed)
  sv = np.arange(1, d + 1) ** -1.0
  basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
  return ((rng.normal(size=(n, d)) * sv) @ basis.T + 0.5).astype(np.float32)


@pytest.mark.parametrize("n,d", [(400, 120), (90, 200)])
def test_randomized_matches_exact(n, d):
  x = _decaying(n, d, seed=6)
  exact = fit_pca(x, 8, method="covariance")
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
  full = fit_pca(x, 10, method="covariance")
  small = fit_pca(x, 3, method="covariance")
  t = full.truncate(3)
  np.testing.assert_allclose(np.asarray(t.components), np.asarray(small.components), atol=1e-5)
  np.testing.assert_allclose(np.asarray(t.apply(x)), np.asarray(small.apply(x)), atol=1e-5)
  with pytest.raises(ValueError):
    full.truncate(11)


@pytest.mark.parametrize("method", ["covariance", "gram", "randomized"])
def test_every_method_gives_numpys_pca(method):
  x = _decaying(150, 60, seed=11)
  pca = fit_pca(x, 6, method=method)
  xc = x.astype(np.float64) - x.mean(0, dtype=np.float64)
  _, s, vt = np.linalg.svd(xc, full_matrices=False)
  np.testing.assert_allclose(np.asarray(pca.explained_variance), s[:6] ** 2 / 149, rtol=1e-3)
  cos = np.abs(np.sum(np.asarray(pca.components, np.float64) * vt[:6], axis=1))
  assert cos.min() > 0.999, cos


@pytest.fixture(scope="module")
def store_problem(tmp_path_factory):
  rng = np.random.default_rng(12)
  x = _decaying(600, 256, seed=12) * 3 + rng.normal(size=(600, 256)).astype(np.float32) * 0.01
  store = shards.write_store(
      tmp_path_factory.mktemp("store") / "features",
      x.reshape(600, 16, 16),
      dtype="float32",
      shard_bytes=170 * 256 * 4,  # 170 rows a shard: reads cross shard boundaries
  )
  return x, store, np.arange(500), np.arange(500, 600)


@pytest.mark.parametrize("method", ["covariance", "gram", "randomized"])
def test_a_store_in_a_small_budget_gives_the_arrays_pca(store_problem, method):
  """Every fit reads a feature store in bounded pieces and gets the in-memory PCA."""
  x, store, tr, te = store_problem
  passes = []
  got = fit_pca(
      store, 12, rows=tr, method=method, memory_budget=6 << 20, progress=passes.append, n_iter=2
  )
  ref = fit_pca(x[tr], 12, method="covariance")
  assert got.feature_shape == (16, 16)
  np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got.explained_variance[:8], ref.explained_variance[:8], rtol=1e-3)
  cosines = np.linalg.svd(got.components[:8] @ ref.components[:8].T, compute_uv=False)
  assert cosines.min() > 0.999, cosines
  if method == "randomized":
    assert passes.count("pass") == 2 + 2 * 2  # the passes the docstring promises, no more
  codes = project(got, store, te, memory_budget=1 << 20)
  np.testing.assert_allclose(codes, np.asarray(got.apply(x[te])), atol=1e-3)


@pytest.mark.parametrize("exact_max", [4096, 100], ids=["eigh", "subspace_iteration"])
def test_gram_codes_of_rows_outside_the_fit_equal_the_projection(
    store_problem, monkeypatch, exact_max
):
  x, store, tr, te = store_problem
  monkeypatch.setattr(pca_lib, "EXACT_EIGH_MAX", exact_max)
  ref = fit_pca(x[tr], 12, method="covariance")
  rows = np.concatenate([tr, te])
  gram, mean = gram_matrix(store, rows, np.arange(tr.size), memory_budget=8 << 20)
  np.testing.assert_allclose(mean, ref.mean, rtol=1e-5, atol=1e-5)
  t = np.arange(tr.size)
  w, u = gram_eigen(gram, t, 12)
  np.testing.assert_allclose(w / (tr.size - 1), ref.explained_variance, rtol=1e-3)
  codes = gram_codes(gram, np.arange(tr.size, rows.size), t, w, u)
  proj = np.asarray(ref.apply(x[te]))
  signs = np.sign(np.sum(codes * proj, axis=0))
  np.testing.assert_allclose(codes * signs, proj, rtol=1e-3, atol=1e-3 * np.abs(proj).max())


def test_array_rows_reads_like_a_store(store_problem):
  x, store, tr, _ = store_problem
  rows = ArrayRows.of(x.reshape(600, 16, 16))
  assert rows.dim == store.dim == 256 and rows.feature_shape == store.feature_shape
  pick = np.array([5, 590, 17])
  np.testing.assert_array_equal(rows.columns(pick, 10, 20), store.columns(pick, 10, 20))
  for (p_got, x_got), (p_ref, x_ref) in zip(
      rows.batches(tr, 64, shuffle_seed=1), store.batches(tr, 64, shuffle_seed=1)
  ):
    np.testing.assert_array_equal(p_got, p_ref)
    np.testing.assert_array_equal(x_got, x_ref)


def test_a_budget_below_one_row_is_one_line(store_problem):
  _, store, tr, _ = store_problem
  with pytest.raises(ValueError, match="raise it") as e:
    fit_pca(store, 4, rows=tr, method="randomized", memory_budget=1000)
  assert "\n" not in str(e.value)
