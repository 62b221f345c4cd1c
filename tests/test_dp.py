"""The formal bound on the uploaded noise: dp-accounting's epsilon against the closed-form GDP curve,
composition as mu * sqrt(k), clipping, and the degenerate cases (no noise, a bad clip)."""

import importlib.util
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from privjax.errors import ConfigError
from privjax.privacy import dp

pytestmark = pytest.mark.unit

needs_dp_accounting = pytest.mark.skipif(
    importlib.util.find_spec('dp_accounting') is None, reason='dp-accounting is not installed'
)


def _delta_by_integration(eps, mu):
  """delta(eps) of N(0, 1) against N(mu, 1) as the hockey-stick integral, not the formula."""
  x = np.linspace(-40, 40 + mu, 400_001)
  p, q = norm.pdf(x, loc=mu), norm.pdf(x)
  return float(np.trapezoid(np.maximum(p - math.exp(eps) * q, 0), x))


@pytest.mark.parametrize('eps,mu', [(0.0, 0.5), (1.0, 1.0), (3.0, 2.0), (0.2, 0.1), (20.0, 5.0)])
def test_the_gdp_curve_is_the_hockey_stick_divergence_of_two_gaussians(eps, mu):
  np.testing.assert_allclose(dp.gdp_delta(eps, mu), _delta_by_integration(eps, mu), rtol=1e-6)


@needs_dp_accounting
@pytest.mark.parametrize('mu', [0.05, 0.3, 1.0, 2.5, 8.0])
@pytest.mark.parametrize('uploads', [1, 4, 50])
def test_dp_accounting_agrees_with_the_closed_form(mu, uploads):
  closed = dp.epsilon_closed_form(mu, 1e-5, uploads=uploads)
  accounted = dp.epsilon(mu, 1e-5, uploads=uploads)
  # The accountant rounds pessimistically on a grid of 1e-4 * max(1, composed mu)^2.
  assert closed - 1e-9 <= accounted <= closed * (1 + 1e-3) + 1e-3, (closed, accounted)
  assert abs(dp.gdp_delta(closed, mu * math.sqrt(uploads)) - 1e-5) < 1e-9


@needs_dp_accounting
def test_known_values_and_the_units_of_clip_and_sigma():
  # mu = 1 at delta 1e-5: epsilon 4.4 (e.g. Dong, Roth & Su's conversion); sigma = 2C gives mu = 1.
  assert dp.gaussian_mu(clip=3.0, sigma=6.0) == 1.0
  eps = dp.epsilon(clip=3.0, sigma=6.0)
  assert eps == pytest.approx(dp.epsilon_closed_form(1.0), rel=1e-3)
  assert 4.0 < eps < 4.8
  assert dp.epsilon(1.0, 1e-5) > dp.epsilon(1.0, 1e-3)  # a smaller delta costs epsilon


def test_composition_is_mu_times_root_k():
  for mu, k in ((0.3, 9), (1.0, 100), (2.0, 2)):
    assert dp.epsilon_closed_form(mu, uploads=k) == pytest.approx(
        dp.epsilon_closed_form(mu * math.sqrt(k)), rel=1e-9
    )
  if importlib.util.find_spec('dp_accounting'):
    assert dp.epsilon(0.5, uploads=16) == pytest.approx(dp.epsilon(2.0), rel=1e-3)
  assert dp.epsilon_closed_form(1.0, uploads=10) > dp.epsilon_closed_form(1.0, uploads=9)


def test_no_noise_is_infinite_epsilon_never_an_error():
  assert dp.gaussian_mu(1.0, 0.0) == math.inf
  assert dp.epsilon(clip=1.0, sigma=0.0) == math.inf
  assert dp.epsilon_closed_form(clip=1.0, sigma=0.0, uploads=3) == math.inf
  assert dp.summary(2.0, 0.0) == (
      'epsilon = inf at delta = 1e-05 for 1 upload clipped to C = 2, noise sigma = 0: '
      'no noise, no guarantee'
  )
  line = dp.summary(2.0, 8.0, uploads=4) if importlib.util.find_spec('dp_accounting') else ''
  assert '\n' not in line


def test_bad_input_gets_one_line():
  for call, match in (
      (lambda: dp.gaussian_mu(0.0, 1.0), 'the clip norm C must be a positive finite number, got 0'),
      (lambda: dp.clip_norm(jnp.ones((2, 3)), -1.0), 'positive finite number, got -1'),
      (lambda: dp.epsilon(clip=float('nan'), sigma=1.0), 'positive finite number, got nan'),
      (lambda: dp.gaussian_mu(1.0, -2.0), 'standard deviation must be finite and >= 0, got -2'),
      (lambda: dp.epsilon(1.0, 0.0), r'delta must be in \(0, 1\), got 0'),
      (lambda: dp.epsilon(1.0, uploads=0), 'uploads must be a positive integer, got 0'),
      (lambda: dp.epsilon(), 'give either mu or both clip and sigma'),
      (lambda: dp.epsilon(1.0, clip=1.0, sigma=1.0), 'give either mu or both clip and sigma'),
      (lambda: dp.fit_clip(jnp.zeros((4, 3))), 'the 99th percentile of the feature norms is 0'),
      (lambda: dp.fit_clip(jnp.ones((4, 3)), percentile=0), r'percentile must be in \(0, 100\]'),
  ):
    with pytest.raises(ConfigError, match=match) as e:
      call()
    assert '\n' not in str(e.value)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
  monkeypatch.setitem(sys.modules, 'dp_accounting', None)  # import raises ImportError
  with pytest.raises(
      ConfigError, match=r"^epsilon needs Google's dp-accounting: pip install 'privjax\[dp\]'$"
  ):
    dp.epsilon(1.0)
  assert dp.epsilon(clip=1.0, sigma=0.0) == math.inf  # no noise needs no accountant
  assert dp.epsilon_closed_form(1.0) > 0


def test_clip_norm_bounds_long_rows_and_leaves_short_ones_alone():
  z = (
      jax.random.normal(jax.random.key(0), (64, 4, 4, 2))
      * jnp.linspace(0.01, 3, 64)[:, None, None, None]
  )
  clipped = dp.clip_norm(z, 2.0)
  norms = np.linalg.norm(np.asarray(z).reshape(64, -1), axis=1)
  after = np.linalg.norm(np.asarray(clipped).reshape(64, -1), axis=1)
  short = norms <= 2.0
  assert 0 < short.sum() < 64
  assert (after <= 2.0 * (1 + 1e-6)).all()
  np.testing.assert_array_equal(np.asarray(clipped)[short], np.asarray(z)[short])
  np.testing.assert_allclose(after[~short], 2.0, rtol=1e-6)
  # Direction is kept: each clipped row is a positive multiple of the original.
  cos = (np.asarray(clipped).reshape(64, -1) * np.asarray(z).reshape(64, -1)).sum(1) / (
      after * norms
  )
  np.testing.assert_allclose(cos, 1.0, rtol=1e-5)
  np.testing.assert_array_equal(dp.clip_norm(jnp.zeros((2, 3)), 1.0), jnp.zeros((2, 3)))
  assert jax.jit(lambda z: dp.clip_norm(z, 2.0))(z).shape == z.shape


def test_fit_clip_is_the_percentile_of_the_row_norms():
  norms = np.arange(1, 101, dtype=np.float32)
  rows = np.zeros((100, 2, 3), np.float32)
  rows[:, 0, 0] = norms
  assert dp.fit_clip(rows) == pytest.approx(np.percentile(norms, 99))
  assert dp.fit_clip(rows, percentile=50) == pytest.approx(50.5)
  assert dp.fit_clip(rows, percentile=100) == 100.0
