"""The learned reconstruction attack: a decoder from noiseless cut features to images, trained on
attacker-train images, tested on attacker-test (privjax.attacks.reconstruction). Config section
`reconstruction` (enabled, steps, batch_size). Result: `reconstruction` {psnr, ssim (means over
attacker-test), grid (reconstruction.png: originals above, reconstructions below), train_seconds},
once; its images are left in the context for `reidentify` and the `inversion` grid (method
'decoder')."""

from __future__ import annotations

import time

import numpy as np

from privjax import metrics, paths
from privjax.attacks import reconstruction

SETTINGS = 'once'
GRID = 'reconstruction.png'


def run(ctx, setting) -> dict:
  rc = ctx.config.reconstruction
  originals = {s: ctx.images(s) for s in ('attacker_train', 'attacker_test')}
  t0 = time.perf_counter()
  decoder = reconstruction.fit_decoder(
      ctx.data['attacker_train']['features'],
      originals['attacker_train'],
      steps=rc.steps,
      batch_size=rc.batch_size,
      seed=ctx.config.seed,
  )
  recon = np.asarray(decoder.reconstruct(ctx.data['attacker_test']['features']))
  ctx.add_reconstructions('decoder', np.arange(len(recon)), recon)
  # save_image_grid makes the folder (through epath: the report folder may be a URI).
  reconstruction.save_image_grid(originals['attacker_test'], recon, paths.join(ctx.out_dir, GRID))
  return {
      'reconstruction': {
          'psnr': float(np.mean(metrics.psnr(originals['attacker_test'], recon))),
          'ssim': float(np.mean(metrics.ssim(originals['attacker_test'], recon))),
          'grid': GRID,  # relative to the report folder
          'train_seconds': time.perf_counter() - t0,
      }
  }
