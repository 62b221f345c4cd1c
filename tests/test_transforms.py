"""Tests for privjax.privacy.transforms (transform specs, Gaussian noise)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from privjax.privacy.transforms import (
    TransformSpec,
    add_gaussian_noise,
    parse_transform,
    upload_noise,
)

pytestmark = pytest.mark.unit


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


def test_upload_noise_is_a_function_of_the_row_alone():
  """Any subset of rows, in any order, gets the noise the whole split gets: batches of a store read
  in another order see the same uploads as the array in memory."""
  every = upload_noise(3, "attacker_train/none/0.1", np.arange(50), 40, 0.1)
  some = upload_noise(3, "attacker_train/none/0.1", [7, 2, 49], 40, 0.1)
  np.testing.assert_array_equal(some, every[[7, 2, 49]])
  other_stream = upload_noise(3, "attacker_test/none/0.1", np.arange(50), 40, 0.1)
  other_seed = upload_noise(4, "attacker_train/none/0.1", np.arange(50), 40, 0.1)
  assert not np.allclose(every, other_stream) and not np.allclose(every, other_seed)
  big = upload_noise(0, "s", np.arange(2000), 100, 0.25)
  assert abs(big.var() - 0.25) < 0.005 and abs(big.mean()) < 0.005  # 2e5 draws
  assert not upload_noise(0, "s", np.arange(5), 3, 0.0).any()
  with pytest.raises(ValueError):
    upload_noise(0, "s", np.arange(5), 3, -1.0)
