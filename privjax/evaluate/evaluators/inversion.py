"""White-box inversion (rMLE, He et al. 2019; privjax.attacks.inversion): the attacker owns the
extractor that ships to the device and optimises images until their uploaded features match a
user's, with a total-variation prior.

It runs once, on a fixed subset of attacker-test images (`num_images`, drawn with the eval seed),
through the frozen extractor followed by the transform and noise of one deployed setting
(`transform`, `noise_variance`; default none and 0, where the learned decoder is trained, so the two
compare). The targets are the cached uploaded features of those images (a noise draw of its own
when `noise_variance` > 0; the inversion then matches the features in expectation over the noise).
The start is the attacker's mean image (`init = 'mean'`, from attacker-train) or mid-grey ('grey').
With `tv_weights` given, the TV weight is the one that inverts `tune_images` of the attacker's own
attacker-train images best (`inversion.tune_tv_weight`); otherwise `tv_weight`.

Config section `inversion`: enabled, num_images, steps, lr, tv_weight, tv_weights, tune_images,
batch_size, init, transform, noise_variance. Result `inversion`: psnr and ssim (means over the
subset) and, on the same images, the learned decoder's (`decoder`, if it ran before) and the
attacker's mean image's (`mean_image`, the no-information baseline); the TV weight (and the tuning
scores), the mean relative feature error, seconds, and `grid` (reconstructions.png: originals,
decoder, rMLE, one row each). Its images are left in the context for `reidentify` (method
'inversion').
"""

from __future__ import annotations

import time

import jax
import numpy as np
from flax import nnx

from privjax import metrics, paths
from privjax.attacks import inversion
from privjax.errors import EvalError
from privjax.evaluate import protocol
from privjax.privacy import transforms

SETTINGS = 'once'
GRID = 'reconstructions.png'
GRID_COLUMNS = 16


def check(run, eval_config) -> None:
  c = eval_config.inversion
  if c.num_images < 1 or c.steps < 1:
    raise EvalError(
        f'inversion: num_images and steps must be positive, got {c.num_images}, {c.steps}'
    )
  if c.init not in ('mean', 'grey'):
    raise EvalError(f"inversion.init must be 'mean' or 'grey', got {c.init!r}")
  try:
    transforms.parse_transform(c.transform)
  except ValueError as e:
    raise EvalError(f'inversion.transform: {e}') from None
  if c.noise_variance < 0:
    raise EvalError(f'inversion.noise_variance {c.noise_variance} is negative')


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
  """The fixed subset of attacker-test rows: `n` drawn with `seed`, in row order."""
  return np.sort(np.random.default_rng(seed).permutation(n_total)[: min(n, n_total)])


def deployed_extractor(model, pca, variance: float):
  """`f(x, key)`: images in [0, 1] -> uploaded features, as the device computes them (the
  extractor on 0..255 pixels, its own random layers drawn from `key`, then PCA, then noise)."""
  graphdef, params = nnx.split(model.extractor)

  def extractor(x, key):
    k_device, k_noise = jax.random.split(key)
    f = nnx.merge(graphdef, params)(x * 255.0, rng=k_device)
    if pca is not None:
      f = pca.apply(f)
    return transforms.add_gaussian_noise(k_noise, f, variance) if variance > 0 else f

  return extractor


def save_rows(rows: list[np.ndarray], path: str, n: int = GRID_COLUMNS) -> str:
  """PNG of image rows [N, S, S, 3] in [0, 1], the first `n` of each, one row per array."""
  from PIL import Image

  n = min(n, *(len(r) for r in rows))
  grid = np.concatenate([np.concatenate(list(r[:n]), axis=1) for r in rows], axis=0)
  image = Image.fromarray((np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
  with paths.as_path(path).open('wb') as f:  # `path` may be a URI
    image.save(f, format='PNG')
  return path


def _quality(originals, images) -> dict:
  return {
      'psnr': float(np.mean(metrics.psnr(originals, images))),
      'ssim': float(np.mean(metrics.ssim(originals, images))),
  }


def run(ctx, setting) -> dict:
  c = ctx.config.inversion
  t0 = time.perf_counter()
  test_images = ctx.images('attacker_test')
  idx = subset(len(test_images), c.num_images, ctx.config.seed)
  originals = test_images[idx]
  pca = protocol.fit_transform(ctx.run, c.transform, ctx.data[ctx.train_split]['features'])
  key = jax.random.fold_in(jax.random.key(ctx.config.seed), 0x1A7E)
  k_target, k_tune, k_invert = jax.random.split(key, 3)
  target = ctx.data['attacker_test']['features'][idx]
  if pca is not None:
    target = np.asarray(pca.apply(target), np.float32)
  if c.noise_variance > 0:
    target = np.asarray(transforms.add_gaussian_noise(k_target, target, c.noise_variance))
  extractor = deployed_extractor(ctx.run.model, pca, float(c.noise_variance))
  own = ctx.images('attacker_train')
  mean_image = own.mean(axis=0)
  init = mean_image if c.init == 'mean' else None
  kw = dict(steps=int(c.steps), lr=float(c.lr), init=init, batch_size=int(c.batch_size))
  tv_weight, tv_scores = float(c.tv_weight), None
  if len(c.tv_weights):
    tune = own[subset(len(own), c.tune_images, ctx.config.seed + 1)]
    tv_weight, tv_scores = inversion.tune_tv_weight(
        extractor, tune, tuple(c.tv_weights), key=k_tune, **kw
    )
  info = {}
  recon = inversion.invert(
      extractor, target, originals.shape[1:], tv_weight=tv_weight, key=k_invert, info=info, **kw
  )
  ctx.add_reconstructions('inversion', idx, recon)
  out = {
      **_quality(originals, recon),
      'num_images': int(len(idx)),
      'steps': int(c.steps),
      'transform': c.transform,
      'noise_variance': float(c.noise_variance),
      'tv_weight': tv_weight,
      'feature_error': float(np.mean(info['feature_error'])),
      'mean_image': _quality(originals, np.broadcast_to(mean_image, originals.shape)),
  }
  if tv_scores is not None:
    out['tv_psnr'] = {f'{w:g}': s for w, s in tv_scores.items()}
  rows = [originals]
  decoder = ctx.store.get('reconstructions', {}).get('decoder')
  if decoder is not None:
    decoder_images = decoder[1][np.searchsorted(decoder[0], idx)]
    out['decoder'] = _quality(originals, decoder_images)
    rows.append(decoder_images)
  rows.append(recon)
  paths.as_path(ctx.out_dir).mkdir(parents=True, exist_ok=True)
  save_rows(rows, paths.join(ctx.out_dir, GRID))
  out['grid'] = GRID
  out['seconds'] = time.perf_counter() - t0
  return {'inversion': out}
