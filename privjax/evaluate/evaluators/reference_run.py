"""The same attackers on another run's untransformed, noiseless cut features (for example the
undefended `none` run a defence was fine-tuned from). Settings: `workdir` (that run; required)."""

from __future__ import annotations

import dataclasses
import os

from privjax import paths
from privjax.errors import EvalError
from privjax.evaluate import features as features_lib
from privjax.evaluate import shared

WHERE = 'once'
SPLITS = ('attacker_train', 'attacker_test')


@dataclasses.dataclass(frozen=True)
class Settings:
  workdir: str = ''


def check(run, settings, eval_config) -> None:
  if not settings.workdir:
    raise EvalError('reference_run: give the run to compare with (--config.reference_run.workdir)')


def run(ctx, setting, settings) -> dict:
  ref = features_lib.load_run(settings.workdir, data_dir=ctx.data_dir)
  d = {s: features_lib.extract(ref, s, batch_size=ctx.config.batch_size) for s in SPLITS}
  ctx.detail(
      workdir=os.fspath(paths.absolute(settings.workdir)), step=ref.step, defence=ref.defence
  )
  on = f'{ref.defence["name"]} run features'
  out = {}
  for secret in ctx.secrets:
    record = ctx.attack(
        ctx.config.attacker_families,
        d['attacker_train']['features'],
        d['attacker_test']['features'],
        d['attacker_train'][secret],
        d['attacker_test'][secret],
        factory=shared.head_factory(ref),
        head=f'{ref.config.model.arch}:{ref.config.model.cut}',
        desc=f'{secret} on the reference run',
    )
    out.update(shared.attack_metrics(secret, record, role='', on=on))
  return out
