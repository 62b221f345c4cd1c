"""A formal bound beside the attacks: what the device's clip and Gaussian noise alone promise
(privjax.privacy.dp). Each upload is clipped to L2 norm C and gets noise of standard deviation
sigma, so it is mu-GDP with mu = 2C / sigma for replacing one image by any other; k uploads about
one person compose to mu * sqrt(k). Reported: mu, and epsilon at `delta` for one upload and for
each count in `uploads`, from Google's dp-accounting (the `dp` extra). A setting without noise has
no bound (epsilon = inf), and one without a clip (`clip_percentile` = 0) none either.

These are 'guarantee' metrics: lower is more private, and they hold against any attacker, where
the attacks only show what one attacker did.
"""

from __future__ import annotations

import dataclasses
import math

from privjax.metrics import results
from privjax.privacy import dp

WHERE = 'each'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'each'
  delta: float = 1e-5
  uploads: tuple = (1, 8)


def run(ctx, setting, settings) -> dict:
  sigma = math.sqrt(setting.noise_variance)
  if setting.clip is None or sigma == 0:
    why = 'no noise' if sigma == 0 else 'no clip'
    return {
        f'epsilon_{k}': results.Metric(
            math.inf,
            label=f'epsilon at delta {settings.delta:g}, {k} upload{"s" * (k > 1)}',
            role='guarantee',
            uploads=int(k),
            note=f'{why}: nothing to bound',
        )
        for k in settings.uploads
    }
  mu = dp.gaussian_mu(setting.clip, sigma)
  out = {
      'mu': results.Metric(mu, label=f'mu-GDP of one upload (C = {setting.clip:.3g})'),
  }
  for k in settings.uploads:
    out[f'epsilon_{k}'] = results.Metric(
        dp.epsilon(mu, settings.delta, uploads=int(k)),
        label=f'epsilon at delta {settings.delta:g}, {k} upload{"s" * (k > 1)}',
        role='guarantee',
        uploads=int(k),
    )
  return out
