"""Each attacker family (privjax/attacks/registry.py) on each secret label, trained on attacker-train
and tested on attacker-test uploaded features, and the strongest. Config: `attackers` (the
families), `attacker_overrides` (their settings) and `primary_secret_sweep` (attack a secret equal
to the primary label at every setting, or only at the baseline). Result: `attacks` {secret:
registry.summarize's record}, at every setting.

With `memory_budget_gb` and splits that exceed it (privjax.evaluate.streamed), `run_streamed` runs
instead: on uploaded features held in a feature store, the families with a streaming version
(`STREAMING`: linear -> streaming_linear, pca_linear -> streaming_pca_linear), each reported under
its own family name, its record's `streaming_family` saying which ran; the others are skipped,
logged and listed in the secret's record under `skipped` (family -> why). Overrides: a streaming
family takes `attacker_overrides.<streaming family>`, and `streaming_pca_linear` also the
`pca_linear` section (sizes, whiten, fit_linear's settings); `streaming_linear` takes `l2` from
the `linear` section (its other keys are L-BFGS settings). On PCA codes (small, in memory) every
family runs as usual but `transfer`, which needs the features mapped back to the cut's shape."""

from __future__ import annotations

from privjax.attacks import registry, streaming
from privjax.errors import EvalError
from privjax.evaluate import protocol
from privjax.evaluate.evaluators import common

SETTINGS = 'each'
STREAMING = {'linear': 'streaming_linear', 'pca_linear': 'streaming_pca_linear'}


def enabled(eval_config) -> bool:
  return True  # the report's privacy columns


def check(run, eval_config) -> None:
  for family in eval_config.attackers:
    if family not in registry.ATTACKERS:
      raise EvalError(f'unknown attacker {family!r}; valid: {", ".join(registry.ATTACKERS)}')


def _secrets(ctx, setting):
  return [
      s
      for s in ctx.secrets
      if s != ctx.primary or setting.baseline or ctx.config.primary_secret_sweep
  ]


def run(ctx, setting) -> dict:
  cfg = ctx.run.config
  factory = protocol.head_factory(ctx.run)
  transfer = (setting.cut_shaped('attacker_train'), setting.cut_shaped('attacker_test'))
  return {
      'attacks': {
          secret: ctx.attack(
              ctx.config.attackers,
              setting.noisy['attacker_train'],
              setting.noisy['attacker_test'],
              ctx.labels('attacker_train', secret),
              ctx.labels('attacker_test', secret),
              factory=factory,
              transfer_inputs=transfer,
              head=f'{cfg.model.arch}:{cfg.model.cut}',
              desc=f'{secret} attackers',
          )
          for secret in _secrets(ctx, setting)
      }
  }


def _streaming_overrides(overrides: dict, family: str) -> dict:
  name = STREAMING[family]
  if name == 'streaming_pca_linear':
    return {**overrides.get('pca_linear', {}), **overrides.get(name, {})}
  base = {k: v for k, v in overrides.get('linear', {}).items() if k == 'l2'}
  return {**base, **overrides.get(name, {})}


def run_streamed(ctx, setting, memory_budget: int) -> dict:
  """`run` for a setting of privjax.evaluate.streamed: uploaded features in a store, or codes."""
  train, test = setting.noisy['attacker_train'], setting.noisy['attacker_test']
  overrides = ctx.config.attacker_overrides.to_dict()
  out = {}
  for secret in _secrets(ctx, setting):
    y_train = ctx.labels('attacker_train', secret)
    y_test = ctx.labels('attacker_test', secret)
    skipped = {}
    if not isinstance(train, streaming.FeatureStore):  # codes in memory
      families = [f for f in ctx.config.attackers if f != 'transfer']
      if 'transfer' in ctx.config.attackers:
        skipped['transfer'] = "needs the uploaded features in the cut's shape, which do not fit"
      record = ctx.attack(families, train, test, y_train, y_test, factory=None, desc=secret)
    else:
      results = {}
      for family in ctx.config.attackers:
        if family not in STREAMING:
          skipped[family] = 'no streaming version'
          continue
        result = streaming.run_streaming_attack(
            STREAMING[family],
            train,
            y_train,
            y_test,
            ctx.data['attacker_train']['rows'],
            ctx.data['attacker_test']['rows'],
            seed=ctx.config.seed,
            memory_budget=memory_budget,
            **_streaming_overrides(overrides, family),
        )
        result.extra['streaming_family'] = result.family
        results[family] = result
      record = registry.summarize(results, y_train, y_test)
      for family in results:
        record['families'][family]['streaming_family'] = STREAMING[family]
    for family, why in skipped.items():
      common.log('[%s] %s attacker skipped on streamed features: %s', secret, family, why)
    if skipped:
      record['skipped'] = skipped
    out[secret] = record
  return {'attacks': out}
