"""The same attackers on another run's untransformed, noiseless cut features (e.g. the non-private
`simple` run). Config: `reference_run` (its workdir; '' = off). Result: `reference_run` {'workdir',
'step', 'mode', secret: record...}, once."""

from __future__ import annotations

import os

from privjax import paths
from privjax.evaluate import features as features_lib
from privjax.evaluate import protocol

SETTINGS = 'once'
SPLITS = ('attacker_train', 'attacker_test')


def enabled(eval_config) -> bool:
  return bool(eval_config.reference_run)


def run(ctx, setting) -> dict:
  c = ctx.config
  ref = features_lib.load_run(c.reference_run, data_dir=ctx.data_dir)
  d = {s: features_lib.extract(ref, s, batch_size=c.batch_size) for s in SPLITS}
  out = {
      'workdir': os.fspath(paths.absolute(c.reference_run)),  # a URI as it is
      'step': ref.step,
      'mode': ref.defence['name'],
  }
  for secret in ctx.secrets:
    out[secret] = ctx.attack(
        c.attackers,
        d['attacker_train']['features'],
        d['attacker_test']['features'],
        d['attacker_train'][secret],
        d['attacker_test'][secret],
        factory=protocol.head_factory(ref),
        head=f'{ref.config.model.arch}:{ref.config.model.cut}',
        desc=f'{secret} on the reference run',
    )
  return {'reference_run': out}
