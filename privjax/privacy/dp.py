"""A formal privacy bound for the Gaussian noise added to uploaded features on the device.

The setting: the device uploads its feature vector clipped to L2 norm C (``clip_norm``) plus
N(0, sigma^2 I) noise (``privjax.privacy.transforms.add_gaussian_noise`` with variance
sigma^2). Replacing the user's image by any other moves the clipped vector by at most 2C in L2
norm (sensitivity 2C), so one upload is mu-GDP (Dong, Roth & Su 2019, Gaussian differential
privacy) with mu = 2C / sigma (``gaussian_mu``): a local guarantee for each upload, whatever the
other users do. k uploads about the same person compose to mu * sqrt(k)-GDP. mu-GDP holds exactly
the (epsilon, delta) pairs on the curve

    delta(epsilon) = Phi(-epsilon / mu + mu / 2) - e^epsilon Phi(-epsilon / mu - mu / 2)

(Balle & Wang 2018, the analytic Gaussian mechanism). ``epsilon`` reads epsilon at a delta off
Google's dp-accounting (its privacy-loss-distribution accountant: a Gaussian DpEvent of noise
multiplier sigma / (2C), self-composed k times); ``epsilon_closed_form`` solves the curve above
for epsilon (Brent's bracketing root search), as a check. No noise (sigma = 0) gives epsilon = inf,
never an error. What happens to the upload after the noise (a PCA of the noisy vector, any
attacker) is post-processing and keeps the bound; a transform before the clip is part of the
feature map.

C is fitted on the model owner's own training features (``fit_clip``): it is fixed before any
user uploads, so it reveals nothing about a user's image.

Needs the [dp] extra (dp-accounting) for ``epsilon`` only. Must not import ``privjax.models``,
``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special

from privjax.errors import ConfigError

__all__ = [
    "clip_norm",
    "fit_clip",
    "gaussian_mu",
    "epsilon",
    "epsilon_closed_form",
    "gdp_delta",
    "summary",
    "DEFAULT_DELTA",
    "DEFAULT_PERCENTILE",
]

DEFAULT_DELTA = 1e-5
# C is the 99th percentile of the owner's training feature norms: clipping then changes about one
# upload in a hundred (on the owner's data), so the features keep their utility, while one outlier
# cannot set C (the maximum would: the noise needed for a given mu grows with C).
DEFAULT_PERCENTILE = 99.0
_MISSING = "epsilon needs Google's dp-accounting: pip install 'privjax[dp]'"


def _check_clip(clip) -> float:
  clip = float(clip)
  if not clip > 0 or not math.isfinite(clip):
    raise ConfigError(f"the clip norm C must be a positive finite number, got {clip}")
  return clip


def _check_sigma(sigma) -> float:
  sigma = float(sigma)
  if not sigma >= 0 or not math.isfinite(sigma):
    raise ConfigError(f"the noise standard deviation must be finite and >= 0, got {sigma}")
  return sigma


def _check_delta(delta) -> float:
  delta = float(delta)
  if not 0 < delta < 1:
    raise ConfigError(f"delta must be in (0, 1), got {delta}")
  return delta


def _check_uploads(uploads) -> int:
  if int(uploads) != uploads or uploads < 1:
    raise ConfigError(f"uploads must be a positive integer, got {uploads}")
  return int(uploads)


def clip_norm(z, clip):
  """Each row of ``z`` ([N, ...], its norm over all but the first axis) scaled to L2 norm at most
  ``clip``; rows already that short are returned unchanged."""
  clip = _check_clip(clip)
  z = jnp.asarray(z)
  axes = tuple(range(1, z.ndim))
  norms = jnp.sqrt(jnp.sum(jnp.square(z.astype(jnp.float32)), axis=axes, keepdims=True))
  over = norms > clip
  scale = jnp.where(over, clip / jnp.where(over, norms, 1.0), 1.0)
  return jnp.where(over, z * scale.astype(z.dtype), z)


def fit_clip(features, percentile: float = DEFAULT_PERCENTILE) -> float:
  """C: the ``percentile`` of the L2 norms of the rows of ``features`` ([N, ...], the owner's
  training features at the cut), see DEFAULT_PERCENTILE."""
  x = jnp.asarray(features)
  if x.ndim < 2 or x.shape[0] == 0:
    raise ConfigError(f"fit_clip expects features of shape [N, ...] with N > 0, got {x.shape}")
  norms = np.asarray(jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=range(1, x.ndim))))
  return clip_from_norms(norms, percentile)


def clip_from_norms(norms, percentile: float = DEFAULT_PERCENTILE) -> float:
  """C from the L2 norms of the owner's training features (``fit_clip`` without the features)."""
  if not 0 < percentile <= 100:
    raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
  norms = np.asarray(norms, np.float64).reshape(-1)
  if norms.size == 0:
    raise ConfigError("no feature norms to fit the clip on")
  clip = float(np.percentile(norms, percentile))
  if not clip > 0:
    raise ConfigError(
        f"the {percentile:g}th percentile of the feature norms is {clip}; the features are zero"
    )
  return clip


def gaussian_mu(clip, sigma) -> float:
  """mu of one upload clipped to ``clip`` with noise of standard deviation ``sigma``: 2C / sigma
  (inf without noise)."""
  clip, sigma = _check_clip(clip), _check_sigma(sigma)
  return math.inf if sigma == 0 else 2 * clip / sigma


def _mu(mu, clip, sigma) -> float:
  if (mu is None) == (clip is None and sigma is None):
    raise ConfigError("give either mu or both clip and sigma")
  if mu is None:
    if clip is None or sigma is None:
      raise ConfigError("give both clip and sigma (or mu)")
    return gaussian_mu(clip, sigma)
  mu = float(mu)
  if not mu >= 0:
    raise ConfigError(f"mu must be >= 0, got {mu}")
  return mu


def gdp_delta(eps: float, mu: float) -> float:
  """delta(epsilon) of mu-GDP (module docstring), evaluated in log space for large epsilon."""
  if mu == 0:
    return 0.0
  if math.isinf(mu):
    return 1.0
  first = scipy.special.ndtr(-eps / mu + mu / 2)
  second = math.exp(eps + scipy.special.log_ndtr(-eps / mu - mu / 2))
  return float(max(first - second, 0.0))


def epsilon_closed_form(
    mu=None, delta: float = DEFAULT_DELTA, *, uploads: int = 1, clip=None, sigma=None
) -> float:
  """epsilon at ``delta`` of ``uploads`` compositions of mu-GDP, from the exact curve by bisection."""
  mu, delta, uploads = _mu(mu, clip, sigma), _check_delta(delta), _check_uploads(uploads)
  total = mu * math.sqrt(uploads)
  if math.isinf(total):
    return math.inf
  if gdp_delta(0.0, total) <= delta:
    return 0.0
  high = 1.0
  while gdp_delta(high, total) > delta:
    high *= 2
  return float(scipy.optimize.brentq(lambda e: gdp_delta(e, total) - delta, 0.0, high, xtol=1e-12))


def epsilon(
    mu=None, delta: float = DEFAULT_DELTA, *, uploads: int = 1, clip=None, sigma=None
) -> float:
  """epsilon at ``delta`` after ``uploads`` uploads, from dp-accounting's PLD accountant; give
  ``mu`` (per upload) or ``clip`` and ``sigma``. inf without noise."""
  mu, delta, uploads = _mu(mu, clip, sigma), _check_delta(delta), _check_uploads(uploads)
  if math.isinf(mu):
    return math.inf
  if mu == 0:
    return 0.0
  try:
    import dp_accounting
  except ImportError:
    raise ConfigError(_MISSING) from None
  # Sensitivity 1 with noise multiplier 1 / mu is the same Gaussian privacy loss as sensitivity
  # 2C with standard deviation sigma. The loss grid scales with the composed mu, so a large mu
  # (a huge epsilon) does not need millions of grid points.
  total = mu * math.sqrt(uploads)
  accountant = dp_accounting.pld.PLDAccountant(
      value_discretization_interval=1e-4 * max(1.0, total) ** 2
  )
  event = dp_accounting.GaussianDpEvent(noise_multiplier=1 / mu)
  accountant.compose(dp_accounting.SelfComposedDpEvent(event, uploads))
  return float(accountant.get_epsilon(delta))


def summary(clip, sigma, delta: float = DEFAULT_DELTA, uploads: int = 1) -> str:
  """One line: the guarantee of ``uploads`` uploads clipped to ``clip`` with noise ``sigma``."""
  mu = gaussian_mu(clip, sigma)
  eps = epsilon(mu, delta, uploads=uploads)
  plural = "s" if uploads > 1 else ""
  what = f"{uploads} upload{plural} clipped to C = {clip:g}, noise sigma = {sigma:g}"
  if math.isinf(mu):
    return f"epsilon = inf at delta = {delta:g} for {what}: no noise, no guarantee"
  return (
      f"epsilon = {eps:.3g} at delta = {delta:g} for {what} "
      f"(mu = {mu:.3g} per upload, {mu * math.sqrt(uploads):.3g} composed)"
  )
