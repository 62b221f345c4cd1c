"""Attacks on accounts: the cloud knows which account sent each upload, so it can pool an account's
photos before naming the person (privjax.attacks.accounts). `k` different attacker-test photos of
one person form a group (drawn without replacement within the person, with the eval seed); an
attacker family trained on the attacker-train uploads scores every photo and the group is named by
its mean log-probability. Top-1 for each k, with a standard error clustered by person, and how
many people and groups each k has.

The top-1 at the largest k whose groups cover at least `min_people` people is a 'leak' metric
seeing k uploads: the frontier and the report judge a setting by it beside the single-upload
figures. Settings: `where`, `label`, `families` (the pooling needs each one's scores per photo: the
attackers evaluator's fit at the same setting where it made one, privjax.attacks.registry.fit),
`ks`, `min_people`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privjax.attacks import accounts, registry
from privjax.errors import EvalError
from privjax.evaluate import shared

WHERE = 'each'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'each'
  label: str = 'identity'
  families: tuple = ('linear',)
  ks: tuple = (1, 2, 4, 8)
  min_people: int = 30


def check(run, settings, eval_config) -> None:
  for family in settings.families:
    if family not in registry.ATTACKERS or family == 'transfer':
      raise EvalError(
          f'accounts.families: {family!r} is not an attacker family on uploads; valid: '
          f'{", ".join(f for f in registry.ATTACKERS if f != "transfer")}'
      )
  if not settings.ks or min(settings.ks) < 1:
    raise EvalError(f'accounts.ks must be positive group sizes, got {settings.ks}')


def run(ctx, setting, settings) -> dict:
  label = settings.label
  train = np.asarray(setting.uploaded('attacker_train'))
  test = np.asarray(setting.uploaded('attacker_test'))
  y_train, y_test = ctx.labels('attacker_train', label), ctx.labels('attacker_test', label)
  overrides = ctx.config.attacker_overrides.to_dict()
  out = {}
  for family in settings.families:
    attacker, _ = registry.fit(
        family, train, y_train, seed=ctx.config.seed, **overrides.get(family, {})
    )
    logits = np.asarray(attacker.logits(test))
    records = accounts.pooled_top1(
        logits, y_test, tuple(settings.ks), ctx.config.seed, class_map=attacker.class_map
    )
    ctx.detail(**{family: {str(k): r for k, r in records.items()}})
    metrics = shared.pooled_metrics(records, settings.min_people, f'of {family} on accounts', label)
    out.update({f'{family}/{k}': m for k, m in metrics.items()})
  return out
