"""Report tables on a hand-made report: standard errors, the majority-class rate, non-convergence."""

import copy

import pytest

from privjax.report import tables

pytestmark = pytest.mark.unit


def _attack(top1, se, strongest='linear', converged=True):
  fams = {
      'linear': {
          'top1': top1,
          'top1_se': se,
          'top5': 0.9,
          'top5_se': 0.01,
          'num_test': 2000,
          'log_rank': 0.25,
          'train_seconds': 3.0,
          'converged': converged,
          'iterations': 200 if not converged else 31,
          'max_iter': 200,
      },
      'pca_mlp': {
          'top1': top1 - 0.01,
          'top1_se': se,
          'top5': 0.8,
          'top5_se': 0.01,
          'num_test': 2000,
          'log_rank': 0.3,
          'train_seconds': 5.0,
          'pca_k': 128,
          'whiten': True,
      },
  }
  return {
      'families': fams,
      'strongest': strongest,
      'top1': top1,
      'top1_se': se,
      'top5': 0.9,
      'top5_se': 0.01,
      'chance_top1': 0.5,
      'chance_top5': 1.0,
      'majority_top1': 0.78,
  }


def _report():
  entry = {
      'transform': 'none',
      'noise_variance': 0.0,
      'uploaded_dims': 8192,
      'primary_head_accuracy': 0.95,
      'attacks': {'gender': _attack(0.363, 0.012, converged=False)},
      'rank_privacy': {
          'mean_normalized_rank': 0.01,
          'fraction_first': 0.9,
          'normalized_log_rank': 0.02,
      },
  }
  return {
      'workdir': '/runs/x',
      'arch': 'vgg_mini',
      'cut': 'conv4_2',
      'mode': 'simple',
      'step': 6,
      'margin': 1.0,
      'primary': 'identity',
      'secrets': ['gender'],
      'primary_accuracy_full_model': 0.9,
      'feature_stats': {'dims': 8192, 'norm': {}, 'dist_same': {}, 'dist_diff': {}},
      'sweep': [entry],
      'pixel_reference': {'gender': _attack(0.8, 0.009)},
      'seconds': 12.0,
  }


def test_accuracies_carry_their_standard_error():
  assert tables.pct_se(0.363, 0.012) == '36.3 ± 1.2'
  assert tables.pct_se(0.363, None) == '36.3'  # reports from before standard errors
  text = tables.markdown(_report())
  assert '36.3 ± 1.2 (linear)' in text  # the sweep's strongest attacker
  assert '| gender | raw pixels (strongest: linear) | 80.0 ± 0.9 |' in text


def test_majority_class_rate_is_shown_beside_chance():
  lines = tables.families_table(_report())
  chance = lines.index('| gender | chance | 50.0 | 100.0 | | |')
  assert lines[chance + 1] == '| gender | majority class | 78.0 | | | |'


def test_families_show_their_pca_choice_and_a_capped_fit():
  lines = tables.families_table(_report())
  assert any('pca_mlp (PCA-128, whitened)' in l and '35.3 ± 1.2' in l for l in lines)
  linear = [l for l in lines if l.startswith('| gender | linear')][0]
  assert '**not converged**' in linear and '200 iterations' in linear
  capped = tables.convergence_lines(_report())
  assert capped == [
      '- gender, linear (none, noise σ² 0): stopped at 200 iterations (max_iter 200) without '
      'converging'
  ]
  assert '**Not converged.**' in tables.markdown(_report())
  converged = copy.deepcopy(_report())
  converged['sweep'][0]['attacks']['gender'] = _attack(0.363, 0.012)
  assert tables.convergence_lines(converged) == []
  assert 'Not converged' not in tables.markdown(converged)


def test_compare_shows_standard_errors_and_majority():
  report = _report()
  text = tables.compare_markdown([report, report], ['a', 'b'])
  row = [l for l in text.splitlines() if l.startswith('| **gender top-1, strongest**')][0]
  assert '**36.3** ± 1.2 (linear)' in row
  assert '| gender majority class | 78.0 | 78.0 |' in text
