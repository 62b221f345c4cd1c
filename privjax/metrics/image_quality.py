"""Per-image reconstruction quality: PSNR and SSIM (JAX, jit-friendly).

Used to score how well an attacker reconstructs the input image from the
uploaded features.  Images are ``[N, H, W, C]``; both functions return one
value per image, ``[N]``.

``ssim`` is the standard Wang et al. 2004 SSIM with an 11x11 Gaussian
window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (not sample)
covariances, evaluated only where the window fits ('valid') and averaged
over positions and channels -- numerically the same as skimage's
``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=..., channel_axis=-1)``.

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["psnr", "ssim", "gaussian_window_1d"]

SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def gaussian_window_1d(size: int = SSIM_WIN_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """Normalised 1-D Gaussian taps (the 2-D SSIM window is their outer product)."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g = np.exp(-0.5 * (x / sigma) ** 2)
  return g / g.sum()


def _check_pair(a, b):
  a = jnp.asarray(a)
  b = jnp.asarray(b)
  if a.shape != b.shape or a.ndim != 4:
    raise ValueError(
        f"expected two [N, H, W, C] arrays of equal shape, got {a.shape} and {b.shape}"
    )
  dtype = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
  return a.astype(dtype), b.astype(dtype)


def psnr(a, b, data_range: float = 1.0):
  """Peak signal-to-noise ratio in dB per image; identical images give ``+inf``."""
  a, b = _check_pair(a, b)
  return _psnr_impl(a, b, jnp.asarray(data_range, a.dtype))


@jax.jit
def _psnr_impl(a, b, data_range):
  mse = jnp.mean((a - b) ** 2, axis=(1, 2, 3))
  val = 10.0 * jnp.log10((data_range * data_range) / jnp.where(mse > 0, mse, 1.0))
  return jnp.where(mse > 0, val, jnp.inf)


def _valid_filter(x, taps, axis):
  # An 11-tap FIR as a sum of shifted slices: exact, separable, and cheaper
  # than a general conv for this tiny kernel.
  n_out = x.shape[axis] - len(taps) + 1
  out = 0.0
  for t, w in enumerate(taps):
    out = out + float(w) * jax.lax.slice_in_dim(x, t, t + n_out, axis=axis)
  return out


def ssim(a, b, data_range: float = 1.0):
  """Mean SSIM per image (see module docstring for the exact definition)."""
  a, b = _check_pair(a, b)
  _, h, w, _ = a.shape
  if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
    raise ValueError(f"ssim needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}, got {h}x{w}")
  return _ssim_impl(a, b, jnp.asarray(data_range, a.dtype))


# Jitted as a whole: eagerly, each of the ~70 small ops would be compiled
# separately, which costs seconds per new image shape.
@jax.jit
def _ssim_impl(a, b, data_range):
  taps = gaussian_window_1d()
  c1 = (SSIM_K1 * data_range) ** 2
  c2 = (SSIM_K2 * data_range) ** 2

  # Second moments are computed about each image's per-channel mean:
  # (co)variances are invariant to shifting a and b independently, and the
  # smaller magnitudes cut the float32 cancellation in E[x^2] - E[x]^2 by
  # orders of magnitude (a constant image then has exactly zero variance).
  shift_a = jnp.mean(a, axis=(1, 2), keepdims=True)
  shift_b = jnp.mean(b, axis=(1, 2), keepdims=True)
  x = a - shift_a
  y = b - shift_b
  stack = jnp.stack([x, y, x * x, y * y, x * y], axis=0)  # [5, N, H, W, C]
  filt = _valid_filter(_valid_filter(stack, taps, axis=2), taps, axis=3)
  mx, my, mxx, myy, mxy = filt[0], filt[1], filt[2], filt[3], filt[4]
  vx = mxx - mx * mx
  vy = myy - my * my
  vxy = mxy - mx * my
  ux = mx + shift_a
  uy = my + shift_b
  num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
  den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
  return jnp.mean(num / den, axis=(1, 2, 3))
