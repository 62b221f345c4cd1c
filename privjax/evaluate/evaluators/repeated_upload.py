"""The same photo uploaded k times with fresh device noise: an attacker that averages the k uploads
sees noise of variance sigma^2 / k, which is what erodes noise-based defences. The attacker is
trained on averages of k uploads of its own photos (the distribution it sees) and tested on
averages of k uploads of attacker-test photos (privjax.attacks.accounts: the mean of k Gaussian
draws is one draw of variance sigma^2 / k; each row's draw follows the evaluation's noise rule,
privjax.privacy.transforms.upload_noise). Runs at noisy settings only.

The top-1 at the largest k is a 'leak' metric seeing k uploads. Settings: `where`, `label`,
`family`, `ks`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privjax.attacks import registry
from privjax.errors import EvalError
from privjax.evaluate import shared
from privjax.metrics import results
from privjax.privacy import transforms

WHERE = 'each'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'each'
  label: str = 'identity'
  family: str = 'linear'
  ks: tuple = (1, 2, 4, 8)


def check(run, settings, eval_config) -> None:
  if settings.family not in registry.ATTACKERS or settings.family == 'transfer':
    raise EvalError(f'repeated_upload.family: {settings.family!r} is not a family on uploads')
  if not settings.ks or min(settings.ks) < 1:
    raise EvalError(f'repeated_upload.ks must be positive upload counts, got {settings.ks}')


def averaged(ctx, setting, split: str, k: int) -> np.ndarray:
  """The mean of k uploads of every row of `split` at `setting`."""
  z = np.asarray(setting.clean(split), np.float32)
  flat = z.reshape(len(z), -1)
  noise = transforms.upload_noise(
      ctx.config.seed,
      f'{split}/{setting.name}/mean of {k}',
      np.arange(len(z)),
      flat.shape[1],
      setting.noise_variance / k,
  )
  return (flat + noise).reshape(z.shape)


def run(ctx, setting, settings) -> dict:
  if setting.noise_variance == 0:
    return {}
  label, family = settings.label, settings.family
  y_train, y_test = ctx.labels('attacker_train', label), ctx.labels('attacker_test', label)
  overrides = ctx.config.attacker_overrides.to_dict().get(family, {})
  largest = max(settings.ks)
  out = {}
  for k in sorted(settings.ks):
    result = registry.run_attack(
        family,
        averaged(ctx, setting, 'attacker_train', k),
        y_train,
        averaged(ctx, setting, 'attacker_test', k),
        y_test,
        seed=ctx.config.seed,
        **overrides,
    )
    leak = {'role': 'leak', 'secret': label, 'uploads': k} if k == largest and k > 1 else {}
    out[f'k{k}'] = results.percent(
        result.top1,
        result.top1_se,
        label=(
            f'{label} top-1, {family} on '
            + (f'the mean of {k} uploads' if k > 1 else 'one upload')
            + ' of one photo'
        ),
        note=shared.family_note(result.summary()),
        **leak,
    )
  return out
