"""Reconstruction (inversion) attack: a decoder learns to invert an invertible feature map."""

import numpy as np
import pytest
from PIL import Image

from privjax.attacks import fit_decoder, save_image_grid
from privjax.metrics.image_quality import psnr

pytestmark = pytest.mark.unit

S = 8


def smooth_images(n, seed=0):
  """Low-frequency colour images in (0, 1): learnable from a few hundred examples."""
  rng = np.random.default_rng(seed)
  coarse = rng.normal(size=(n, 2, 2, 3))
  up = np.repeat(np.repeat(coarse, S // 2, axis=1), S // 2, axis=2)
  yy, xx = np.meshgrid(np.linspace(-1, 1, S), np.linspace(-1, 1, S), indexing='ij')
  ramp = rng.normal(size=(n, 1, 1, 3)) * (yy + xx)[None, :, :, None]
  return (1.0 / (1.0 + np.exp(-(up + ramp)))).astype(np.float32)


def test_decoder_inverts_an_invertible_linear_feature_map():
  images = smooth_images(560)
  a = np.random.default_rng(1).normal(size=(S * S * 3, S * S * 3)).astype(np.float32)
  features = images.reshape(len(images), -1) @ a
  train, test = slice(0, 480), slice(480, None)
  decoder = fit_decoder(
      features[train], images[train], steps=200, lr=2e-3, batch_size=32, eval_every=50, seed=0
  )
  recon = decoder.reconstruct(features[test])
  assert recon.shape == images[test].shape
  assert recon.min() >= 0.0 and recon.max() <= 1.0
  mse = np.mean((recon - images[test]) ** 2)
  mean_image_mse = np.mean((images[test] - images[train].mean(axis=0)) ** 2)
  assert mse < 0.25 * mean_image_mse, (mse, mean_image_mse)
  assert decoder.info['val_mse'] < decoder.info['mean_image_val_mse']
  assert np.mean(psnr(images[test], recon)) > np.mean(
      psnr(images[test], np.broadcast_to(images[train].mean(axis=0), recon.shape))
  )


def test_decoder_accepts_spatial_features():
  images = smooth_images(64, seed=2)
  features = np.repeat(images, 2, axis=-1)  # [N, 8, 8, 6], H >= the start grid: conv entry
  decoder = fit_decoder(features, images, steps=20, eval_every=10, batch_size=16)
  assert decoder.reconstruct(features[:5]).shape == (5, S, S, 3)


def test_save_image_grid_writes_labelled_rows(tmp_path):
  images = smooth_images(20)
  rows, labels = [images, images[::-1], images[:18]], ['original', 'decoder', 'rMLE']
  path = save_image_grid(rows, labels, tmp_path / 'sub' / 'grid.png', n=19)
  with Image.open(path) as im:
    assert im.format == 'PNG' and im.mode == 'RGB'
    pixels = np.asarray(im)
  width = pixels.shape[1] - 18 * S  # n capped at the shortest row
  assert pixels.shape[0] == 3 * S and 30 < width < 100
  # The pictures, in order, right of the label column.
  want = (np.clip(images[:18], 0, 1) * 255 + 0.5).astype(np.uint8)
  np.testing.assert_array_equal(pixels[:S, width:], np.concatenate(list(want), axis=1))
  last = (np.clip(images[19], 0, 1) * 255 + 0.5).astype(np.uint8)  # images[::-1] starts there
  np.testing.assert_array_equal(pixels[S : 2 * S, width : width + S], last)
  # Each row's label is drawn in its own row (dark text on white), longer labels wider.
  column = pixels[:, :width].min(axis=2)
  inked = [np.flatnonzero((column[i * S : (i + 1) * S] < 128).any(axis=0)) for i in range(3)]
  assert all(len(x) for x in inked) and inked[2].max() < inked[0].max()
  assert (column[:, : inked[0].min()] == 255).all()  # white before the text
  with pytest.raises(ValueError, match='3 rows of images but 2 labels'):
    save_image_grid(rows, labels[:2], tmp_path / 'bad.png')
  with pytest.raises(ValueError, match='image shapes differ'):
    save_image_grid([images, images[:, :4]], labels[:2], tmp_path / 'bad.png')
