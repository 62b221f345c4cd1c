"""Utility: a fresh linear probe for the primary task, trained on the owner's uploaded training
features and tested on the test split's: what a cloud that retrains its head could reach."""

from __future__ import annotations

from privjax.evaluate import shared
from privjax.metrics import results

WHERE = 'each'


def run(ctx, setting, settings) -> dict:
  probe = ctx.attack(
      ['linear'],
      setting.uploaded(ctx.train_split),
      setting.uploaded(ctx.test_split),
      ctx.labels(ctx.train_split, ctx.primary),
      ctx.labels(ctx.test_split, ctx.primary),
      factory=None,
      desc=f'{ctx.primary} probe',
  )
  r = probe['families']['linear']
  return {
      'accuracy': results.percent(
          r['top1'],
          r['top1_se'],
          label=f'{ctx.primary} accuracy, fresh linear probe',
          role='utility',
          note=shared.family_note(r),
      )
  }
