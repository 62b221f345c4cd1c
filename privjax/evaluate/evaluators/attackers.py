"""Each attacker family (privjax/attacks/registry.py) on each secret label, trained on attacker-train
and tested on attacker-test uploaded features, and the strongest. Config: `attackers` (the
families), `attacker_overrides` (their settings) and `primary_secret_sweep` (attack a secret equal
to the primary label at every setting, or only at the baseline). Result: `attacks` {secret:
registry.summarize's record}, at every setting."""

from __future__ import annotations

from privjax.attacks import registry
from privjax.evaluate import protocol
from privjax.evaluate.errors import EvalError

SETTINGS = 'each'


def enabled(eval_config) -> bool:
  return True  # the report's privacy columns


def check(run, eval_config) -> None:
  for family in eval_config.attackers:
    if family not in registry.ATTACKERS:
      raise EvalError(f'unknown attacker {family!r}; valid: {", ".join(registry.ATTACKERS)}')


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
          for secret in ctx.secrets
          if secret != ctx.primary or setting.baseline or ctx.config.primary_secret_sweep
      }
  }
