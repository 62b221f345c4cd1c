"""Each attacker family (privjax/attacks/registry.py) on each secret label, trained on the
attacker-train uploads and tested on the attacker-test uploads: every family's top-1 is a 'leak'
metric, so the strongest of them (and of any other evaluator's) judges the setting.

The families and their keyword arguments are the eval config's `attacker_families` and
`attacker_overrides` (shared with every evaluator that trains attackers). Settings: `primary_sweep`
(attack a secret equal to the primary label at every setting, or only at the baseline: the probe
measures it elsewhere).

On uploads held in a feature store (splits over the eval config's memory budget), the families with
a streaming version run instead (`STREAMING`: linear -> streaming_linear, pca_linear ->
streaming_pca_linear), each reported under its own family name and recorded in the details; the
others are skipped, logged and listed in the details. A streaming family takes the overrides of
its streaming name, and `streaming_pca_linear` also `pca_linear`'s (sizes, whiten, fit_linear's
settings); `streaming_linear` takes `l2` from `linear`'s (its other keys are L-BFGS settings). On
PCA codes of a store (small, in memory) every family runs but `transfer`, which needs the features
mapped back to the cut's shape.
"""

from __future__ import annotations

import dataclasses

from privjax.attacks import registry, streaming
from privjax.errors import EvalError
from privjax.evaluate import shared, sources
from privjax.evaluate.evaluators import common

WHERE = 'each'
STORES = True
STREAMING = {'linear': 'streaming_linear', 'pca_linear': 'streaming_pca_linear'}


@dataclasses.dataclass(frozen=True)
class Settings:
  primary_sweep: bool = True


def check(run, settings, eval_config) -> None:
  for family in eval_config.attacker_families:
    if family not in registry.ATTACKERS:
      raise EvalError(f'unknown attacker {family!r}; valid: {", ".join(registry.ATTACKERS)}')


def secrets(ctx, setting, primary_sweep: bool) -> list[str]:
  return [s for s in ctx.secrets if s != ctx.primary or setting.baseline or primary_sweep]


def run(ctx, setting, settings) -> dict:
  cfg = ctx.run.config
  families = list(ctx.config.attacker_families)
  out = {}
  for secret in secrets(ctx, setting, settings.primary_sweep):
    train, test = setting.uploaded('attacker_train'), setting.uploaded('attacker_test')
    y_train = ctx.labels('attacker_train', secret)
    y_test = ctx.labels('attacker_test', secret)
    if isinstance(train, sources.Uploads):
      overrides = ctx.config.attacker_overrides.to_dict()
      record = _streamed(ctx, train, test, y_train, y_test, families, overrides)
    elif ctx.features.streamed:
      in_memory = [f for f in families if f != 'transfer']
      record = ctx.attack(in_memory, train, test, y_train, y_test, factory=None, desc=secret)
      if 'transfer' in families:
        record['skipped'] = {'transfer': "needs the uploads in the cut's shape, which do not fit"}
    else:
      record = ctx.attack(
          families,
          train,
          test,
          y_train,
          y_test,
          factory=shared.head_factory(ctx.run),
          transfer_inputs=(
              setting.cut_shaped('attacker_train'),
              setting.cut_shaped('attacker_test'),
          ),
          head=f'{cfg.model.arch}:{cfg.model.cut}',
          desc=f'{secret} attackers',
      )
    for family, why in record.get('skipped', {}).items():
      common.log('[%s] %s attacker skipped: %s', secret, family, why)
    ctx.detail(**{secret: {k: v for k, v in record.items() if k != 'families'}})
    ctx.detail(**{f'{secret}/families': record['families']})
    out.update(shared.attack_metrics(secret, record))
  return out


def _streaming_overrides(overrides: dict, family: str) -> dict:
  name = STREAMING[family]
  if name == 'streaming_pca_linear':
    return {**overrides.get('pca_linear', {}), **overrides.get(name, {})}
  base = {k: v for k, v in overrides.get('linear', {}).items() if k == 'l2'}
  return {**base, **overrides.get(name, {})}


def _streamed(ctx, train, test, y_train, y_test, families, overrides) -> dict:
  results, skipped = {}, {}
  for family in families:
    if family not in STREAMING:
      skipped[family] = 'no streaming version'
      continue
    result = streaming.run_streaming_attack(
        STREAMING[family],
        train.store,
        y_train,
        y_test,
        train.rows,
        test.rows,
        seed=ctx.config.seed,
        memory_budget=ctx.features.budget,
        **_streaming_overrides(overrides, family),
    )
    results[family] = result
  if not results:
    raise EvalError(
        f'none of the attackers {", ".join(families)} reads a feature store; use one of: '
        f'{", ".join(STREAMING)}'
    )
  record = registry.summarize(results, y_train, y_test)
  for family in results:
    record['families'][family]['streaming_family'] = STREAMING[family]
  if skipped:
    record['skipped'] = skipped
  return record
