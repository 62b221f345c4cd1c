"""Contrastive loss and cross-entropy against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from privjax import objectives

pytestmark = pytest.mark.unit


def test_contrastive_same_pair_is_half_squared_distance():
  a = jnp.array([[0.0, 0.0]])
  b = jnp.array([[3.0, 4.0]])  # d = 5
  np.testing.assert_allclose(objectives.contrastive_loss(a, b, jnp.array([1.0]), 10.0), 12.5)


def test_contrastive_different_pair_inside_margin():
  a = jnp.array([[0.0, 0.0]])
  b = jnp.array([[3.0, 4.0]])  # d = 5 < margin 10: 0.5 * (10 - 5)^2
  np.testing.assert_allclose(objectives.contrastive_loss(a, b, jnp.array([0.0]), 10.0), 12.5)


def test_contrastive_different_pair_outside_margin_is_zero():
  a = jnp.array([[0.0, 0.0]])
  b = jnp.array([[6.0, 8.0]])  # d = 10 >= margin 7
  np.testing.assert_allclose(objectives.contrastive_loss(a, b, jnp.array([0.0]), 7.0), 0.0)


def test_contrastive_mean_over_pairs_of_spatial_features():
  a = jnp.zeros((2, 1, 1, 2))
  b = jnp.array([[[[1.0, 0.0]]], [[[0.0, 2.0]]]])  # d = 1 (same), d = 2 (different, margin 3)
  expected = 0.5 * (1.0 + (3.0 - 2.0) ** 2) / 2
  np.testing.assert_allclose(
      objectives.contrastive_loss(a, b, jnp.array([1.0, 0.0]), 3.0), expected, rtol=1e-6
  )


def test_contrastive_normalized_features_measure_angles():
  a = jnp.array([[10.0, 0.0]])
  b = jnp.array([[0.0, 0.1]])  # unit vectors at 90 degrees: d = sqrt(2)
  np.testing.assert_allclose(
      objectives.contrastive_loss(a, b, jnp.array([1.0]), 1.0, normalize=True), 1.0, rtol=1e-6
  )


def test_contrastive_gradient_is_finite_for_collapsed_different_pair():
  a = jnp.ones((1, 3))
  g = jax.grad(lambda x: objectives.contrastive_loss(x, a, jnp.array([0.0]), 1.0))(a)
  assert bool(jnp.all(jnp.isfinite(g)))


def test_cross_entropy_hand_value():
  logits = jnp.array([[0.0, jnp.log(3.0)]])  # p = [1/4, 3/4]
  np.testing.assert_allclose(
      objectives.cross_entropy(logits, jnp.array([1])), -np.log(0.75), rtol=1e-6
  )
  np.testing.assert_allclose(
      objectives.cross_entropy(logits.astype(jnp.bfloat16), jnp.array([0])),
      -np.log(0.25),
      rtol=1e-2,
  )
