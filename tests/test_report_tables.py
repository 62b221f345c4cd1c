"""Report tables on a hand-made report: standard errors, the majority-class rate, a family's PCA
choice and a capped fit, the comparison of runs, and reports of another format."""

import json

import pytest

from privjax.errors import EvalError
from privjax.evaluate import shared
from privjax.metrics import results
from privjax.report import tables

pytestmark = pytest.mark.unit


def _family(top1, se, **info):
  return {'top1': top1, 'top1_se': se, 'top5': 0.9, 'top5_se': 0.01, 'num_test': 2000, **info}


def _record(top1, se, converged=True):
  """registry.summarize's record of two families on a 2-class secret."""
  linear = {'converged': converged, 'iterations': 200 if not converged else 31, 'max_iter': 200}
  return {
      'families': {
          'linear': _family(top1, se, **linear),
          'pca_mlp': _family(top1 - 0.01, se, pca_k=128, whiten=True),
      },
      'chance_top1': 0.5,
      'majority_top1': 0.78,
  }


def _metrics(record, **kw):
  return {
      f'attackers/{k}': m.to_dict()
      for k, m in shared.attack_metrics('gender', record, **kw).items()
  }


def _report(converged=False):
  utility = results.percent(0.95, 0.005, label='identity accuracy, cloud head', role='utility')
  return {
      'format': results.REPORT_FORMAT,
      'workdir': '/runs/x',
      'arch': 'vgg_mini',
      'cut': 'conv4_2',
      'defence': {'name': 'siamese', 'margin': 1.0},
      'step': 6,
      'primary': 'identity',
      'secrets': ['gender'],
      'full_model_accuracy': results.percent(0.9, 0.01).to_dict(),
      'settings': [
          {
              'name': 'none/0',
              'transform': 'none',
              'noise_variance': 0.0,
              'uploaded_dims': 8192,
              'baseline': True,
              'metrics': {
                  'head/accuracy': utility.to_dict(),
                  **_metrics(_record(0.363, 0.012, converged=converged)),
              },
          }
      ],
      'once': {
          f'pixel_reference/{k}': v
          for k, v in _metrics(_record(0.8, 0.009), role='raw', on='raw pixels').items()
      },
      'evaluators': {
          'head': {'where': 'each'},
          'attackers': {'where': 'each'},
          'pixel_reference': {'where': 'once'},
      },
      'seconds': 12.0,
  }


def test_accuracies_carry_their_standard_error_in_one_unit():
  text = tables.markdown(_report())
  assert '36.3 ± 1.2 % (gender top-1, linear' in text  # the setting's strongest attack
  assert '| gender top-1 on raw pixels, linear | 80.0 ± 0.9 % |' in text
  assert '90.0 ± 1.0 % for the full model' in text and 'defence **siamese** (margin 1)' in text
  assert '0.363' not in text  # no raw fraction anywhere


def test_majority_class_rate_is_shown_beside_chance():
  lines = tables.setting_sections(_report())
  chance = lines.index('| gender top-1, chance | 50.0 % |')
  assert lines[chance + 1] == '| gender top-1, majority class | 78.0 % |'


def test_families_show_their_pca_choice_and_a_capped_fit():
  lines = tables.setting_sections(_report())
  assert '| gender top-1, pca_mlp | 35.3 ± 1.2 % (PCA-128, whitened) |' in lines
  assert (
      '| gender top-1, linear | 36.3 ± 1.2 % (not converged: stopped at 200 iterations) |' in lines
  )
  assert 'not converged' not in '\n'.join(tables.setting_sections(_report(converged=True)))


def test_top5_of_a_label_with_five_classes_or_fewer_is_left_out():
  """Top-5 of two classes is 100% by construction: a number that says nothing."""
  assert not any('top-5' in l for l in tables.setting_sections(_report()))


def test_compare_shows_standard_errors_and_majority():
  report = _report()
  text = tables.compare_markdown([report, report], ['a', 'b'])
  row = [l for l in text.splitlines() if l.startswith('|   **gender: strongest attack**')][0]
  assert row.count('36.3 ± 1.2 % (gender top-1, linear') == 2
  assert '| gender top-1, majority class | 78.0 % | 78.0 % |' in text


def test_a_report_of_another_format_is_one_line(tmp_path):
  old = {'sweep': [], 'mode': 'simple'}
  (tmp_path / 'report.json').write_text(json.dumps(old))
  with pytest.raises(EvalError, match='report of another privjax version') as e:
    tables.load_report(str(tmp_path))
  assert '\n' not in str(e.value)
  tables.write_report(_report(), str(tmp_path))
  assert tables.load_report(str(tmp_path))['format'] == results.REPORT_FORMAT
