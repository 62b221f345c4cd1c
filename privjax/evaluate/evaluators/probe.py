"""Utility: a fresh linear probe for the primary task, trained on the owner's uploaded training
features and tested on the test split's. Config: `probe` (on/off). Result: `primary_probe` (the
linear family's record), at every setting."""

from __future__ import annotations

SETTINGS = 'each'


def enabled(eval_config) -> bool:
  return bool(eval_config.probe)


def run(ctx, setting) -> dict:
  probe = ctx.attack(
      ['linear'],
      setting.noisy[ctx.train_split],
      setting.noisy[ctx.test_split],
      ctx.labels(ctx.train_split, ctx.primary),
      ctx.labels(ctx.test_split, ctx.primary),
      factory=None,
      desc=f'{ctx.primary} probe',
  )
  return {'primary_probe': probe['families']['linear']}
