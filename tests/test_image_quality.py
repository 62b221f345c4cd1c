"""Tests for privjax.metrics.image_quality (PSNR, SSIM)."""

import math

import jax
import numpy as np
import pytest
import scipy.ndimage

from privjax.metrics.image_quality import psnr, ssim

pytestmark = pytest.mark.unit

C1 = (0.01 * 1.0) ** 2
C2 = (0.03 * 1.0) ** 2


def _ssim_direct(a, b, data_range=1.0):
  """Slow definition-level SSIM: explicit 11x11 Gaussian window at every
  valid position, local (co)variances as weighted central moments."""
  c1 = (0.01 * data_range) ** 2
  c2 = (0.03 * data_range) ** 2
  r = np.arange(11) - 5.0
  g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
  g /= g.sum()
  out = []
  for x_img, y_img in zip(np.asarray(a, np.float64), np.asarray(b, np.float64)):
    h, w, ch = x_img.shape
    vals = []
    for c in range(ch):
      for i in range(h - 10):
        for j in range(w - 10):
          x = x_img[i : i + 11, j : j + 11, c]
          y = y_img[i : i + 11, j : j + 11, c]
          mx, my = (g * x).sum(), (g * y).sum()
          vx = (g * (x - mx) ** 2).sum()
          vy = (g * (y - my) ** 2).sum()
          cxy = (g * (x - mx) * (y - my)).sum()
          vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    out.append(np.mean(vals))
  return np.array(out)


def _ssim_skimage_style(a, b, data_range=1.0):
  """skimage's recipe (gaussian_filter over the full image with
  truncate=3.5, then crop the 5-pixel border) -- checks the 'valid' claim."""
  c1 = (0.01 * data_range) ** 2
  c2 = (0.03 * data_range) ** 2
  out = []
  for x_img, y_img in zip(np.asarray(a, np.float64), np.asarray(b, np.float64)):
    vals = []
    for c in range(x_img.shape[-1]):
      x, y = x_img[..., c], y_img[..., c]
      f = lambda v: scipy.ndimage.gaussian_filter(v, sigma=1.5, truncate=3.5)
      ux, uy, uxx, uyy, uxy = f(x), f(y), f(x * x), f(y * y), f(x * y)
      vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
      s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
      vals.append(s[5:-5, 5:-5].mean())
    out.append(np.mean(vals))
  return np.array(out)


def test_psnr_hand_values():
  rng = np.random.default_rng(0)
  a = rng.uniform(0.0, 0.9, size=(3, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(psnr(a, a + 0.1)), 20.0, atol=1e-3)
  np.testing.assert_allclose(
      np.asarray(psnr(255 * a, 255 * a + 25.5, data_range=255.0)), 20.0, atol=1e-3
  )
  b = a.copy()
  b[:, :4] += 0.5  # half the pixels off by 0.5 -> mse 0.125
  np.testing.assert_allclose(np.asarray(psnr(a, b)), 10 * math.log10(8.0), atol=1e-4)
  # per-image, not pooled over the batch
  mixed = np.stack([a[0], a[1] + 0.1, a[2]])
  got = np.asarray(psnr(a, mixed))
  assert got[0] == np.inf and got[2] == np.inf
  assert got[1] == pytest.approx(20.0, abs=1e-3)


def test_ssim_identical_is_one():
  a = np.random.default_rng(1).uniform(size=(2, 16, 14, 3)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(ssim(a, a)), 1.0, atol=1e-6)


def test_ssim_constant_images_closed_form():
  a = np.full((1, 12, 15, 2), 0.2, np.float32)
  b = np.full((1, 12, 15, 2), 0.6, np.float32)
  expected = (2 * 0.2 * 0.6 + C1) / (0.2**2 + 0.6**2 + C1)
  np.testing.assert_allclose(np.asarray(ssim(a, b)), expected, rtol=1e-5)
  # with data_range 255 the stabilisers scale, so the value changes
  expected255 = (2 * 51 * 153 + (2.55) ** 2) / (51**2 + 153**2 + 2.55**2)
  np.testing.assert_allclose(
      np.asarray(ssim(255 * a, 255 * b, data_range=255.0)), expected255, rtol=1e-5
  )


def test_ssim_matches_direct_reference():
  rng = np.random.default_rng(2)
  a = rng.uniform(size=(2, 17, 15, 2)).astype(np.float32)
  b = np.clip(a + rng.normal(scale=0.2, size=a.shape), 0, 1).astype(np.float32)
  b[1] = rng.uniform(size=b[1].shape)  # an unrelated image: SSIM near 0
  got = np.asarray(ssim(a, b))
  ref = _ssim_direct(a, b)
  np.testing.assert_allclose(got, ref, atol=1e-5)
  np.testing.assert_allclose(got, _ssim_skimage_style(a, b), atol=1e-5)
  assert 0.2 < got[0] < 0.95 and abs(got[1]) < 0.2
  np.testing.assert_allclose(np.asarray(ssim(b, a)), got, atol=1e-6)  # symmetric
  np.testing.assert_allclose(np.asarray(jax.jit(ssim)(a, b)), got, atol=1e-6)


def test_ssim_bright_low_contrast_precision():
  # Local variances from E[x^2] - E[x]^2 cancel badly in float32 on a bright,
  # low-contrast patch (naive float32 is off by ~1e-4 here); the result must
  # still match float64.
  rng = np.random.default_rng(3)
  a = (0.9 + 0.02 * rng.uniform(size=(2, 13, 13, 1))).astype(np.float32)
  b = (a + rng.normal(scale=0.01, size=a.shape)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(ssim(a, b)), _ssim_direct(a, b), atol=1e-5)


def test_ssim_rejects_small_images():
  with pytest.raises(ValueError):
    ssim(np.zeros((1, 10, 20, 1)), np.zeros((1, 10, 20, 1)))
