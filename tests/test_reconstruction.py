"""Reconstruction attack: the training SSIM against the metric, the loss terms at and away from a
perfect reconstruction, method names, augmentation, decoders that generalise through an invertible
map (with and without re-extracting features of augmented images), and the image grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from privjax.attacks import fit_decoder, reconstruction, save_image_grid
from privjax.metrics import image_quality as metrics

pytestmark = pytest.mark.unit

S = 16  # SSIM needs 11 pixels a side


def smooth_images(n, seed=0):
  """Low-frequency colour images in (0, 1): learnable from a few hundred examples."""
  rng = np.random.default_rng(seed)
  coarse = rng.normal(size=(n, 2, 2, 3))
  up = np.repeat(np.repeat(coarse, S // 2, axis=1), S // 2, axis=2)
  yy, xx = np.meshgrid(np.linspace(-1, 1, S), np.linspace(-1, 1, S), indexing='ij')
  ramp = rng.normal(size=(n, 1, 1, 3)) * (yy + xx)[None, :, :, None]
  return (1.0 / (1.0 + np.exp(-(up + ramp)))).astype(np.float32)


def test_training_ssim_is_the_metric_and_one_against_itself():
  # Hand-built images: a ramp, a checkerboard, a constant, and noise.
  yy, xx = np.meshgrid(np.linspace(0, 1, 20), np.linspace(0, 1, 24), indexing='ij')
  ramp = np.stack([yy, xx, 0.5 * (yy + xx)], axis=-1)
  checker = np.broadcast_to(((np.arange(20)[:, None] + np.arange(24)) % 2)[..., None], ramp.shape)
  flat = np.full(ramp.shape, 0.3)
  noise = np.random.default_rng(0).uniform(size=ramp.shape)
  a = np.stack([ramp, checker, flat, noise]).astype(np.float32)
  b = np.stack([checker, ramp, noise, flat]).astype(np.float32)
  np.testing.assert_allclose(reconstruction.ssim(a, a), 1.0, atol=1e-5)
  np.testing.assert_allclose(reconstruction.ssim(a, b), metrics.ssim(a, b), atol=1e-5)
  assert np.all(np.asarray(reconstruction.ssim(a, b)) < 0.5)
  c = jnp.clip(a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), 0.0, 1.0)
  np.testing.assert_allclose(reconstruction.ssim(a, c), metrics.ssim(a, c), atol=1e-5)
  grad = jax.grad(lambda x: jnp.sum(reconstruction.ssim(x, c)))(jnp.asarray(a))
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


def test_loss_terms_are_zero_at_a_perfect_reconstruction_and_by_hand_away_from_it():
  images = jnp.asarray(smooth_images(4))
  weights = dict.fromkeys(reconstruction.LOSSES, 1.0)
  lpips = lambda a, b: jnp.sum((a - b) ** 2, axis=(1, 2, 3))  # noqa: E731
  for name, value in reconstruction.loss_terms(images, images, weights, lpips).items():
    assert abs(float(value)) < 1e-6, name
  off = jnp.clip(images + 0.1, 0.0, 1.0)
  terms = reconstruction.loss_terms(off, images, weights, lpips)
  diff = np.asarray(off - images)
  assert float(terms['l1']) == pytest.approx(np.mean(np.abs(diff)), rel=1e-5)
  assert float(terms['mse']) == pytest.approx(np.mean(diff**2), rel=1e-5)
  assert float(terms['ssim']) == pytest.approx(
      1 - float(np.mean(metrics.ssim(off, images))), abs=1e-5
  )
  assert set(reconstruction.loss_terms(off, images, {'l1': 1.0})) == {'l1'}


def test_method_names():
  assert reconstruction.method_recipe('l1_ssim_aug') == (('l1', 'ssim'), True)
  assert reconstruction.method_recipe('mse') == (('mse',), False)
  for bad in ('aug', 'l2', 'l1_l1', 'l1__ssim', ''):
    with pytest.raises(ValueError, match='decoder method'):
      reconstruction.method_recipe(bad)


def test_augmentation_flips_and_crops_within_range():
  images = jnp.asarray(smooth_images(64))
  plain = reconstruction.augment_images(jax.random.key(0), images, crop=1.0, jitter=0.0)
  same = np.all(np.isclose(plain, images, atol=1e-5), axis=(1, 2, 3))
  mirrored = np.all(np.isclose(plain, images[:, :, ::-1], atol=1e-5), axis=(1, 2, 3))
  assert np.all(same | mirrored) and 10 < mirrored.sum() < 54  # a fair coin per image
  full = np.asarray(reconstruction.augment_images(jax.random.key(1), images))
  assert full.shape == images.shape and full.min() >= 0 and full.max() <= 1
  assert np.mean(np.abs(full - np.asarray(images))) > 0.02


A = np.random.default_rng(1).normal(size=(S * S * 3, 96)).astype(np.float32) / 10


def linear_features(x, key=None):
  """An injective linear map of the images (96 numbers; the images have 12 degrees of freedom)."""
  return x.reshape(x.shape[0], -1) @ A


@pytest.mark.parametrize('augment', [False, True])
def test_decoder_beats_the_mean_image_where_the_features_determine_the_image(augment):
  images = smooth_images(320)
  features = linear_features(images)
  train, test = slice(0, 256), slice(256, None)
  decoder = fit_decoder(
      features[train],
      images[train],
      augment=augment,
      extract=linear_features,
      steps=150,
      lr=3e-3,
      eval_every=50,
      seed=0,
  )
  recon = decoder.reconstruct(features[test])
  assert recon.shape == images[test].shape
  assert recon.min() >= 0.0 and recon.max() <= 1.0
  mean = np.broadcast_to(images[train].mean(axis=0), recon.shape)
  ssim, mean_ssim = np.mean(metrics.ssim(images[test], recon)), np.mean(
      metrics.ssim(images[test], mean)
  )
  assert ssim > mean_ssim + 0.3, (ssim, mean_ssim)
  assert decoder.info['val_ssim'] > decoder.info['mean_image_val_ssim'] + 0.3
  assert decoder.info['val_mse'] < 0.25 * decoder.info['mean_image_val_mse']


def test_decoder_refuses_what_it_cannot_do():
  images = smooth_images(20)
  with pytest.raises(ValueError, match='augment needs extract'):
    fit_decoder(images, images, augment=True)
  with pytest.raises(ValueError, match='lpips_fn'):
    fit_decoder(images, images, losses={'lpips': 1.0})
  with pytest.raises(ValueError, match='unknown losses'):
    fit_decoder(images, images, losses={'l2': 1.0})


def test_decoder_accepts_spatial_features():
  images = smooth_images(64, seed=2)
  features = np.repeat(images, 2, axis=-1)  # [N, 16, 16, 6], H >= the start grid: conv entry
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


def test_a_baseline_image_is_judged_as_if_repeated_for_every_original():
  from privjax.evaluate import shared

  rng = np.random.default_rng(11)
  originals = rng.uniform(size=(5, 32, 32, 3)).astype(np.float32)
  mean = originals.mean(axis=0)
  one = shared.image_quality(originals, mean, 'mean image', role='')
  repeated = shared.image_quality(
      originals, np.repeat(mean[None], len(originals), axis=0), 'mean image', role=''
  )
  assert set(one) == set(repeated)
  for name in one:
    assert one[name].value == pytest.approx(repeated[name].value, rel=1e-5)
    assert one[name].se == pytest.approx(repeated[name].se, rel=1e-4, abs=1e-7)


def test_a_baseline_image_is_scored_once_per_content_of_its_arrays(monkeypatch):
  from privjax.evaluate import shared

  calls = []
  real = shared._image_quality
  monkeypatch.setattr(shared, '_image_quality', lambda *a: calls.append(a) or real(*a))
  monkeypatch.setattr(shared, '_BASELINES', type(shared._BASELINES)(4))
  rng = np.random.default_rng(12)
  originals = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
  mean = originals.mean(axis=0)
  first = shared.image_quality(originals, mean, 'mean image', role='')
  again = shared.image_quality(originals.copy(), mean.copy(), 'mean image', role='')
  assert len(calls) == 1 and again == first
  shared.image_quality(originals, mean + 0.01, 'mean image', role='')  # another image
  shared.image_quality(originals[:3], mean, 'mean image', role='')  # other originals
  shared.image_quality(originals, np.repeat(mean[None], 4, axis=0), 'mean image', role='')
  assert len(calls) == 4  # a batch of images is scored every time
