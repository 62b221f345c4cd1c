"""White-box inversion (rMLE, He et al. 2019; privjax.attacks.inversion): the attacker owns the
extractor that ships to the device and optimises images until their uploads match a user's, with a
total-variation prior, through the extractor, the transform and the noise of the setting it runs
at (the uploads it inverts are that setting's; with noise it matches them in expectation).

It runs on a fixed subset of attacker-test images (`num_images`, drawn with the eval seed). The
start is the attacker's mean image (`init = 'mean'`, from attacker-train), mid-grey ('grey'), or
each image's reconstruction by the first decoder method that ran before at this setting
('decoder': rMLE refines the decoder's guess until its uploads match). With `tv_weights` given,
the TV weight is the one that inverts `tune_images` of the attacker's own images best (started
from the mean image, or grey with `init = 'grey'`); otherwise `tv_weight`. PSNR and SSIM on the
subset, and the first decoder method's on the same images where the reconstruction evaluator ran
before at this setting; its images are left for re-identification.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from privjax.attacks import inversion, reconstruction
from privjax.errors import EvalError
from privjax.evaluate import shared

WHERE = 'baseline'
GRID = 'reconstructions{}.png'
GRID_COLUMNS = 16
INITS = ('mean', 'grey', 'decoder')


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'baseline'
  num_images: int = 128  # a fixed subset of attacker-test (drawn with the seed)
  steps: int = 300
  lr: float = 0.05
  tv_weight: float = 1e-2  # used when tv_weights is empty
  tv_weights: tuple = (0.0, 1e-3, 1e-2, 1e-1, 1.0)  # tuned on the attacker's own images
  tune_images: int = 16
  batch_size: int = 64
  init: str = 'mean'  # the attacker's mean image, 'grey', or 'decoder' (the first decoder's images)


def check(run, settings, eval_config) -> None:
  if settings.num_images < 1 or settings.steps < 1:
    raise EvalError(
        f'inversion: num_images and steps must be positive, got {settings.num_images}, '
        f'{settings.steps}'
    )
  if settings.init not in INITS:
    raise EvalError(f"inversion.init must be one of {', '.join(INITS)}, got {settings.init!r}")


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
  """The fixed subset of attacker-test rows: `n` drawn with `seed`, in row order."""
  return np.sort(np.random.default_rng(seed).permutation(n_total)[: min(n, n_total)])


def run(ctx, setting, settings) -> dict:
  c = settings
  t0 = time.perf_counter()
  test_images = ctx.images('attacker_test')
  idx = subset(len(test_images), c.num_images, ctx.config.seed)
  originals = test_images[idx]
  key = jax.random.fold_in(jax.random.key(ctx.config.seed), 0x1A7E)
  k_tune, k_invert = jax.random.split(key)
  target = np.asarray(setting.uploaded('attacker_test'))[idx]
  extractor = shared.deployed_extractor(
      ctx.run.model, setting.pca, setting.noise_variance, setting.clip
  )
  own = ctx.images('attacker_train')
  made = ctx.reconstructions()
  decoders = [m for m in made if m.startswith('decoder')]
  decoder_images = None
  if decoders:
    rows_made, images_made = made[decoders[0]]
    at = np.searchsorted(rows_made, idx)
    if np.all(at < len(rows_made)) and np.array_equal(rows_made[at], idx):
      decoder_images = np.asarray(images_made)[at]
  if c.init == 'decoder' and decoder_images is None:
    raise EvalError(
        f"inversion.init='decoder' at {setting.name}: no decoder reconstructed these attacker-test"
        ' images before it (run the reconstruction evaluator first, at the same setting)'
    )
  mean_start = own.mean(axis=0) if c.init != 'grey' else None
  kw = dict(steps=int(c.steps), lr=float(c.lr), batch_size=int(c.batch_size))
  tv_weight, tv_scores = float(c.tv_weight), None
  if len(c.tv_weights):
    tune = own[subset(len(own), c.tune_images, ctx.config.seed + 1)]
    tv_weight, tv_scores = inversion.tune_tv_weight(
        extractor, tune, tuple(c.tv_weights), key=k_tune, init=mean_start, **kw
    )
  info = {}
  init = decoder_images if c.init == 'decoder' else mean_start
  recon = inversion.invert(
      extractor,
      target,
      originals.shape[1:],
      tv_weight=tv_weight,
      key=k_invert,
      info=info,
      init=init,
      **kw,
  )
  ctx.add_reconstructions('inversion', idx, recon)
  rmle = 'rMLE from the decoder' if c.init == 'decoder' else 'rMLE'
  out = {f'rmle/{k}': v for k, v in shared.image_quality(originals, recon, rmle).items()}
  rows, labels = [originals], ['original']
  if decoder_images is not None:
    same = shared.image_quality(
        originals, decoder_images, f'{decoders[0]} on the same images', role=''
    )
    out.update({f'decoder/{k}': v for k, v in same.items()})
    rows.append(decoder_images)
    labels.append(f'decoder ({decoders[0].removeprefix("decoder_")})')
  rows.append(recon)
  labels.append(rmle)
  name = GRID.format('' if setting.baseline else '_' + setting.name.replace('/', '_'))
  reconstruction.save_image_grid(
      rows,
      labels,
      ctx.image_path(name, f'originals, {", ".join(labels[1:])}, {setting.name}'),
      GRID_COLUMNS,
  )
  ctx.detail(
      num_images=int(len(idx)),
      init=c.init,
      tv_weight=tv_weight,
      tv_psnr=None if tv_scores is None else {f'{w:g}': s for w, s in tv_scores.items()},
      feature_error=float(np.mean(info['feature_error'])),
      seconds=time.perf_counter() - t0,
  )
  return out
