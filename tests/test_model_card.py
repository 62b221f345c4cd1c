"""MODEL_CARD.md on a hand-made manifest, config and report: the data set and its digest, the
defence, the deployed transform, and the evaluation's figures at the deployed setting with their
standard errors and limits; 'no evaluation found' when there is none."""

import pytest

from privjax.metrics import results
from privjax.report import model_card

pytestmark = pytest.mark.unit


def _manifest(pca_k=4, clip=12.5, noise=0.5, step=6):
  return {
      'artifact': 'extractor.bin',
      'privjax_version': '0.2.0',
      'arch': 'vgg_mini',
      'cut': 'conv4_2',
      'checkpoint_step': step,
      'run': 'siamese',
      'inputs': [
          {
              'name': 'pixels',
              'shape': ['batch', 64, 64, 3],
              'dtype': 'uint8',
              'range': '0..255, RGB, NHWC',
          }
      ],
      'output': {'shape': ['batch', pca_k or 8192], 'dtype': 'float32'},
      'pca_k': pca_k,
      'clip_norm': clip,
      'noise_variance': noise,
  }


CONFIG = {
    'seed': 3,
    'total_steps': 600,
    'dataset': {
        'name': 'synthetic_faces',
        'config': 'tiny',
        'train_split': 'train',
        'test_split': 'test',
        'primary': 'gender',
        'digest': 'd1g3st00ab',
    },
    'defence': {
        'name': 'siamese',
        'siamese': {'weight': 0.01, 'margin': 10.0, 'strength': 'weight', 'strengths': [0.1, 1.0]},
        'nopeek': {'weight': 1.0},
    },
}


def _leak(top1, family, uploads=1):
  return results.percent(
      top1, 0.02, label=f'identity top-1, {family}', role='leak', secret='identity', uploads=uploads
  ).to_dict()


def _report(step=6):
  def setting(name, transform, variance, leak):
    return {
        'name': name,
        'transform': transform,
        'noise_variance': variance,
        'baseline': name == 'none/0',
        'metrics': {
            'head/accuracy': (
                results.percent(
                    0.81, 0.011, label='gender accuracy, cloud head', role='utility'
                ).to_dict()
            ),
            'attackers/identity/linear': _leak(leak, 'linear'),
            'attackers/identity/mlp': _leak(leak + 0.05, 'mlp'),
            'repeated_upload/identity/8': _leak(leak + 0.2, 'mean of 8', uploads=8),
            'dp_bound/epsilon': (
                results.Metric(4.2, label='ε at δ 1e-5, 1 upload', role='guarantee').to_dict()
            ),
        },
    }

  return {
      'format': results.REPORT_FORMAT,
      'step': step,
      'primary': 'gender',
      'secrets': ['identity'],
      'seeds': {'train': 3, 'eval': 0},
      'eval_config': {'name': 'default'},
      'train_config': CONFIG,
      'full_model_accuracy': results.percent(0.9, 0.01).to_dict(),
      'settings': [setting('none/0', 'none', 0.0, 0.6), setting('pca_4/0.5', 'pca:4', 0.5, 0.3)],
      'once': {
          'pixel_reference/identity/linear': (
              results.percent(
                  0.7, 0.015, label='identity top-1, raw pixels', role='raw', secret='identity'
              ).to_dict()
          )
      },
  }


def test_card_without_an_evaluation_says_so():
  card = model_card.model_card(
      _manifest(), CONFIG, None, 'RUN/eval/default/report.json', {'name': 'siamese', 'margin': 7.5}
  )
  assert '# Model card: the device-side extractor of siamese' in card
  assert '- data set `synthetic_faces` (config `tiny`), training split `train`' in card
  assert 'content digest `d1g3st00ab`' in card
  assert '- `siamese`: weight 0.01, margin 10' in card and 'strengths' not in card
  assert 'nopeek' not in card  # another defence's section
  assert '- at this checkpoint: margin 7.5' in card
  assert "| PCA | k = 4, fitted on the training split's cut features |" in card
  assert '| clip of each upload | L2 norm 12.5 |' in card
  assert '| Gaussian noise | variance 0.5, a fresh key per call |' in card
  assert 'No evaluation found (looked for `RUN/eval/default/report.json`)' in card


def test_card_shows_the_deployed_settings_figures_with_their_limits():
  card = model_card.model_card(_manifest(), CONFIG, _report(), 'R/report.json')
  assert 'at its setting `pca_4/0.5`: the transform this artifact deploys' in card
  assert '| gender accuracy, full model (no transform) | 90.0 ± 1.0 % |' in card
  assert '| utility: gender accuracy, cloud head | 81.0 ± 1.1 % |' in card
  # The strongest single-upload attack at the deployed setting (not the baseline's 65 %).
  assert '| **identity: strongest attack** | 35.0 ± 2.0 % (identity top-1, mlp) |' in card
  assert '| identity: strongest, 8 uploads | 50.0 ± 2.0 % (identity top-1, mean of 8) |' in card
  assert (
      '| identity: from the raw photo (reference) | 70.0 ± 1.5 % (identity top-1, raw pixels) |'
      in card
  )
  assert '| ε at δ 1e-5, 1 upload | 4.2 |' in card
  assert (
      'ran at this setting: identity top-1, linear; identity top-1, mean of 8; identity top-1, mlp.'
      in card
  )
  assert 'An attacker not among them may do better' in card
  assert 'binomial standard error over the test examples' in card


def test_card_of_another_setting_or_step_shows_no_figures():
  card = model_card.model_card(_manifest(pca_k=None, noise=0.1), CONFIG, _report(), 'R/report.json')
  assert "has no setting of this artifact's transform (none, σ² 0.1)" in card
  assert 'evaluated: `none/0`, `pca_4/0.5`' in card and 'strongest attack' not in card
  card = model_card.model_card(_manifest(), CONFIG, _report(step=3), 'R/report.json')
  assert 'No evaluation of this checkpoint found: `R/report.json` evaluates step 3' in card
  assert '%' not in card.split('## Evaluation')[1]


def test_card_of_a_noiseless_unprojected_export_and_of_a_bare_model():
  card = model_card.model_card(_manifest(pca_k=None, clip=None, noise=0.0), CONFIG, _report(), 'R')
  assert '| PCA | none |' in card and '| Gaussian noise | none |' in card
  assert '| **identity: strongest attack** | 65.0 ± 2.0 % (identity top-1, mlp) |' in card
  bare = model_card.model_card(_manifest(), None)
  assert 'No run config: the training data, the defence and the evaluation are unknown.' in bare
  assert '## Evaluation' not in bare and '| PCA | k = 4' in bare
