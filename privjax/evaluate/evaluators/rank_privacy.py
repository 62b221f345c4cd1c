"""Rank privacy and log-rank privacy (privjax.metrics.rank_privacy): how far each attacker-test
upload's own noiseless features rank among every image's, from the noisy upload; in %, with
standard errors."""

from __future__ import annotations

from privjax.metrics import rank_privacy, results

WHERE = 'each'


def run(ctx, setting, settings) -> dict:
  r = rank_privacy.rank_privacy(setting.clean('attacker_test'), setting.uploaded('attacker_test'))
  # In %, ± the standard error over the attacker-test uploads, as every other rate of the report.
  return {
      'mean_normalized_rank': results.percent(
          r['mean_normalized_rank'],
          r['mean_normalized_rank_se'],
          label='rank privacy: mean normalised rank (0 %: always first, ~50 %: chance)',
      ),
      'ranked_first': results.percent(
          r['fraction_first'], r['fraction_first_se'], label='rank privacy: ranked first'
      ),
      'normalized_log_rank': results.percent(
          r['normalized_log_rank'],
          r['normalized_log_rank_se'],
          label='rank privacy: normalised log-rank',
      ),
  }
