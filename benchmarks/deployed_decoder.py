"""An evaluator outside privjax (`--config.evaluators` names it `benchmarks.deployed_decoder`): the
learned decoder of privjax.attacks.reconstruction trained on what the cloud receives at the deployed
setting instead of on the noiseless cut features.

The built-in `reconstruction` evaluator trains its decoder on the untransformed, noiseless cut
features (the most the attacker could get). At a deployed PCA + noise setting the attacker holds the
extractor, the PCA and the noise law, so it can make (uploaded features, image) pairs from its own
attacker-train images; this evaluator does that at the setting of the eval config's `inversion`
section (`transform`, `noise_variance`, so the decoder and rMLE attack the same uploads), with the
`reconstruction` section's steps and batch size, and tests on attacker-test's uploaded features of
that setting. Its images are left for `reidentify` as the method 'decoder_deployed'.

Result `deployed_decoder` (in the sweep entry of that setting): psnr, ssim (means over
attacker-test), the setting, the uploaded dimension, train_seconds; nothing at the other settings.
Used by benchmarks/lfw_reconstruction.sh.
"""

from __future__ import annotations

import time

import numpy as np

from privjax.attacks import reconstruction
from privjax.errors import EvalError
from privjax.metrics import image_quality

SETTINGS = 'each'
METHOD = 'decoder_deployed'


def check(run, eval_config) -> None:
  c = eval_config.inversion
  settings = [(t, float(v)) for t in eval_config.transforms for v in eval_config.noise_variances]
  if (c.transform, float(c.noise_variance)) not in settings:
    raise EvalError(
        f'deployed_decoder: the setting {c.transform}, noise {c.noise_variance} (inversion.transform'
        ', inversion.noise_variance) is not among the transforms x noise_variances evaluated'
    )


def run(ctx, setting) -> dict:
  c = ctx.config.inversion
  if (setting.transform, setting.noise_variance) != (c.transform, float(c.noise_variance)):
    return {}
  rc = ctx.config.reconstruction
  t0 = time.perf_counter()
  decoder = reconstruction.fit_decoder(
      setting.noisy['attacker_train'],
      ctx.images('attacker_train'),
      steps=rc.steps,
      batch_size=rc.batch_size,
      seed=ctx.config.seed,
  )
  originals = ctx.images('attacker_test')
  recon = np.asarray(decoder.reconstruct(setting.noisy['attacker_test']))
  ctx.add_reconstructions(METHOD, np.arange(len(recon)), recon)
  return {
      'deployed_decoder': {
          'psnr': float(np.mean(image_quality.psnr(originals, recon))),
          'ssim': float(np.mean(image_quality.ssim(originals, recon))),
          'transform': setting.transform,
          'noise_variance': setting.noise_variance,
          'uploaded_dims': int(np.prod(setting.noisy['attacker_test'].shape[1:])),
          'train_seconds': time.perf_counter() - t0,
      }
  }
