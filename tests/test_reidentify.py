"""Re-identification of reconstructions: on the originals it is the raw-pixel attacker, exactly;
noise reconstructions are at chance, and a reconstruction that keeps some identity lies between."""

import numpy as np
import pytest

from privjax.attacks import fit_identity_classifier, reidentify, run_attack

pytestmark = pytest.mark.unit

K = 10
S = 8


def people(n, seed):
  """Images of K people: a fixed random face per person plus per-image noise, labels 20..29."""
  faces = 0.5 + 0.06 * np.random.default_rng(99).normal(size=(K, S, S, 3))
  rng = np.random.default_rng(seed)
  y = rng.integers(0, K, size=n)
  x = np.clip(faces[y] + rng.normal(scale=0.25, size=(n, S, S, 3)), 0.0, 1.0)
  return x.astype(np.float32), y + 20


def chance_bound(n):
  p = 1.0 / K
  return p + 4.0 * np.sqrt(p * (1 - p) / n)


OVERRIDES = {'linear': {'l2': (1e-2, 1e-1)}, 'mlp': {'max_epochs': 15, 'patience': 5}}


@pytest.mark.parametrize('family', ['linear', 'mlp'])
def test_originals_are_scored_exactly_as_the_raw_pixel_attacker(family):
  (x_train, y_train), (x_test, y_test) = people(300, seed=0), people(200, seed=1)
  raw = run_attack(family, x_train, y_train, x_test, y_test, seed=3, **OVERRIDES[family])
  classifier = fit_identity_classifier(x_train, y_train, family=family, seed=3, **OVERRIDES[family])
  scores = reidentify(classifier, x_test, y_test, {})['originals']
  assert scores['top1'] == raw.top1 and scores['top1_se'] == raw.top1_se
  assert scores['top5'] == raw.top5 and scores['num_test'] == raw.num_test == 200
  assert 0.3 < raw.top1 < 0.95, raw.top1  # neither trivial nor hopeless (linear 0.80, mlp 0.59)


def test_noise_is_at_chance_and_a_partial_reconstruction_lies_between():
  (x_train, y_train), (x_test, y_test) = people(300, seed=0), people(400, seed=2)
  classifier = fit_identity_classifier(x_train, y_train, family='linear', l2=0.1)
  rng = np.random.default_rng(7)
  noise = rng.uniform(size=x_test.shape).astype(np.float32)
  # Half the original, half a stranger's image: some identity survives.
  partial = 0.5 * x_test + 0.5 * x_test[rng.permutation(len(x_test))]
  report = reidentify(classifier, x_test, y_test, {'noise': noise, 'partial': partial})
  ceiling, methods = report['originals']['top1'], report['methods']
  assert report['chance_top1'] == 1.0 / K
  assert report['majority_top1'] == np.bincount(y_test).max() / len(y_test)
  assert methods['noise']['top1'] < chance_bound(len(x_test)), methods['noise']
  assert methods['noise']['top1_se'] == pytest.approx(
      np.sqrt(methods['noise']['top1'] * (1 - methods['noise']['top1']) / len(x_test))
  )
  assert chance_bound(len(x_test)) < methods['partial']['top1'] < ceiling, (methods, ceiling)


def test_reconstructions_must_match_the_originals():
  x, y = people(40, seed=0)
  classifier = fit_identity_classifier(x, y, family='linear', l2=0.1)
  with pytest.raises(ValueError, match='shape'):
    reidentify(classifier, x, y, {'cropped': x[:, :4]})
  with pytest.raises(ValueError, match='ceiling'):
    reidentify(classifier, x, y, {'originals': x})
  with pytest.raises(KeyError, match='unknown attacker family'):
    fit_identity_classifier(x, y, family='oracle')
