"""Rank privacy and log-rank privacy of the noisy attacker-test features against the noiseless ones
(privjax.metrics.rank_privacy). Config: `rank_privacy` (on/off). Result: `rank_privacy`, at every
setting."""

from __future__ import annotations

from privjax import metrics

SETTINGS = 'each'


def enabled(eval_config) -> bool:
  return bool(eval_config.rank_privacy)


def run(ctx, setting) -> dict:
  return {
      'rank_privacy': metrics.rank_privacy(
          setting.clean['attacker_test'], setting.noisy['attacker_test']
      )
  }
