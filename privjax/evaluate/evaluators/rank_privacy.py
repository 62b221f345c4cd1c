"""Rank privacy and log-rank privacy (privjax.metrics.rank_privacy): how far each attacker-test
upload's own noiseless features rank among every image's, from the noisy upload."""

from __future__ import annotations

from privjax.metrics import rank_privacy, results

WHERE = 'each'


def run(ctx, setting, settings) -> dict:
  r = rank_privacy.rank_privacy(setting.clean('attacker_test'), setting.uploaded('attacker_test'))
  return {
      'mean_normalized_rank': results.Metric(
          r['mean_normalized_rank'], label='mean normalised rank (0: always first)'
      ),
      'ranked_first': results.percent(r['fraction_first'], label='ranked first'),
      'normalized_log_rank': results.Metric(r['normalized_log_rank'], label='normalised log-rank'),
  }
