"""The learned reconstruction attack (privjax.attacks.reconstruction): decoders from the uploads to
images, trained on the attacker's own images (attacker-train: it can make their uploads, since it
holds the extractor, the deployed transform and the noise model) and tested on attacker-test
uploads of the setting it runs at. PSNR, SSIM and LPIPS over attacker-test for each method, the
attacker's mean image beside them (a reconstruction that does not beat it shows nothing of the
user). Each method's images are left for the evaluators after it at the same setting
(re-identification, the inversion's grid) as 'decoder_<method>'.

A method names its loss terms and whether the attacker augments its images ('aug': flips, crops and
colour, their uploads made again through the deployed extractor with a fresh noise draw each step),
joined by '_': 'mse' (the paper's), 'l1_ssim', 'l1_ssim_aug' (the default: the best measured on the
LFW photos, benchmarks/results/lfw_attacks.md), any of mse, l1, ssim, lpips. Metrics are named
'decoder_<method>/<psnr|ssim|lpips>'.

Settings: `where` ('baseline': noiseless and untransformed; 'each', or setting names such as
('none/0', 'pca:32/0.1'): the decoders trained on that setting's uploads), `methods`,
`ssim_weight` and `lpips_weight` (the terms' weights; l1 and mse weigh 1), `steps`, `batch_size`,
and the decoder's size: `width` (its first stage's channels, halved at each stage) and `blocks`
(residual blocks per stage; privjax.attacks.reconstruction.InverseNet). The default, width 256 with
one block, is the deeper decoder; width 64 without blocks is the small one, about 17x cheaper, which
the fast configuration runs.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from privjax.attacks import reconstruction
from privjax.errors import EvalError, PretrainedError
from privjax.evaluate import shared

WHERE = 'baseline'
GRID = 'reconstruction{}.png'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'baseline'
  methods: tuple = ('l1_ssim_aug',)
  ssim_weight: float = 1.0
  lpips_weight: float = 0.1
  steps: int = 1000
  batch_size: int = 32
  width: int = 256
  blocks: int = 1


def check(run, settings, eval_config) -> None:
  if not settings.methods or len(set(settings.methods)) != len(settings.methods):
    raise EvalError(f'reconstruction.methods must name distinct methods, got {settings.methods}')
  for method in settings.methods:
    try:
      terms, _ = reconstruction.method_recipe(method)
    except ValueError as e:
      raise EvalError(f'reconstruction.methods: {e}') from None
    if 'lpips' in terms:
      _lpips_fn()
  if settings.steps < 1 or settings.batch_size < 1 or settings.width < 1:
    raise EvalError(
        f'reconstruction: steps, batch_size and width must be positive, got {settings.steps}, '
        f'{settings.batch_size}, {settings.width}'
    )
  if settings.blocks < 0:
    raise EvalError(f'reconstruction.blocks must be 0 or more, got {settings.blocks}')


@functools.cache
def _lpips_fn():
  from privjax.metrics import lpips
  from privjax.models import imagenet_weights

  try:
    params = imagenet_weights.lpips_params()
  except PretrainedError as e:
    raise EvalError(f'reconstruction: the lpips loss needs the imagenet extra: {e}') from None
  return functools.partial(lpips.distance, params)


def grid_name(setting) -> str:
  return GRID.format('' if setting.baseline else '_' + setting.name.replace('/', '_'))


def run(ctx, setting, settings) -> dict:
  own, test = ctx.images('attacker_train'), ctx.images('attacker_test')
  uploads = np.asarray(setting.uploaded('attacker_train'))
  targets = np.asarray(setting.uploaded('attacker_test'))
  extract = shared.deployed_extractor(
      ctx.run.model, setting.pca, setting.noise_variance, setting.clip
  )
  weights = {'mse': 1.0, 'l1': 1.0, 'ssim': settings.ssim_weight, 'lpips': settings.lpips_weight}
  out, rows, labels, details = {}, [test], ['original'], {}
  for method in settings.methods:
    terms, augment = reconstruction.method_recipe(method)
    t0 = time.perf_counter()
    decoder = reconstruction.fit_decoder(
        uploads,
        own,
        losses={t: weights[t] for t in terms},
        augment=augment,
        extract=extract,
        lpips_fn=_lpips_fn() if 'lpips' in terms else None,
        steps=settings.steps,
        batch_size=settings.batch_size,
        width=settings.width,
        blocks=settings.blocks,
        seed=ctx.config.seed,
    )
    recon = np.asarray(decoder.reconstruct(targets))
    name = f'decoder_{method}'
    ctx.add_reconstructions(name, np.arange(len(recon)), recon)
    quality = shared.image_quality(test, recon, f'decoder ({method})')
    out.update({f'{name}/{k}': v for k, v in quality.items()})
    rows.append(recon)
    labels.append(f'decoder ({method})')
    info = decoder.info
    details[name] = {
        'seconds': time.perf_counter() - t0,
        'train_cpu_seconds': info['train_cpu_seconds'],
        'val_ssim': info['val_ssim'],
        'mean_image_val_ssim': info['mean_image_val_ssim'],
        'history': info['history'],
    }
  ctx.detail(**details)
  reconstruction.save_image_grid(
      rows,
      labels,
      ctx.image_path(
          grid_name(setting), f'originals, then {", ".join(settings.methods)}, {setting.name}'
      ),
  )
  quality = shared.image_quality(test, own.mean(axis=0), 'mean image', role='')
  out.update({f'mean_image/{k}': v for k, v in quality.items()})
  return out
