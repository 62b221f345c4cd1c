"""The learned reconstruction attack (privjax.attacks.reconstruction): a decoder from the uploads to
images, trained on the attacker's own images (attacker-train: it can make their uploads, since it
holds the extractor, the shipped transform and the noise model) and tested on attacker-test
uploads. PSNR and SSIM over attacker-test, the attacker's mean image beside them (a
reconstruction that does not beat it shows nothing of the user). Its images are left for the
evaluators after it at the same setting (re-identification, the inversion's grid).

Settings: `where` ('baseline': noiseless and untransformed; 'each': every setting, the decoder
trained on that setting's uploads), `steps`, `batch_size`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from privjax.attacks import reconstruction
from privjax.evaluate import shared

WHERE = 'baseline'
GRID = 'reconstruction{}.png'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'baseline'
  steps: int = 1500
  batch_size: int = 64


def grid_name(setting) -> str:
  return GRID.format('' if setting.baseline else '_' + setting.name.replace('/', '_'))


def run(ctx, setting, settings) -> dict:
  own, test = ctx.images('attacker_train'), ctx.images('attacker_test')
  t0 = time.perf_counter()
  decoder = reconstruction.fit_decoder(
      setting.cut_shaped('attacker_train'),
      own,
      steps=settings.steps,
      batch_size=settings.batch_size,
      seed=ctx.config.seed,
  )
  recon = np.asarray(decoder.reconstruct(setting.cut_shaped('attacker_test')))
  ctx.add_reconstructions('decoder', np.arange(len(recon)), recon)
  reconstruction.save_image_grid(
      [test, recon],
      ['original', 'decoder'],
      ctx.image_path(grid_name(setting), f'originals and decoder, {setting.name}'),
  )
  ctx.detail(train_seconds=time.perf_counter() - t0, steps=decoder.info.get('steps'))
  mean_image = np.broadcast_to(own.mean(axis=0), test.shape)
  return {
      **{f'decoder/{k}': v for k, v in shared.image_quality(test, recon, 'decoder').items()},
      **{
          f'mean_image/{k}': v
          for k, v in shared.image_quality(test, mean_image, 'mean image', role='').items()
      },
  }
