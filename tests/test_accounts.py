"""Attacks on accounts (privjax.attacks.accounts): groups of photos per person, pooled scores, the
clustered standard error, and averaged noisy uploads, on hand-built inputs."""

import math

import jax
import numpy as np
import pytest

from privjax.attacks import accounts
from privjax.attacks.common import ClassMap
from privjax.metrics import classification
from privjax.privacy import transforms

pytestmark = pytest.mark.unit

# people 10, 11, 12, 13 with 5, 3, 1 and 8 photos, interleaved
LABELS = np.array([10] * 5 + [11] * 3 + [12] + [13] * 8)[np.random.default_rng(0).permutation(17)]


@pytest.mark.parametrize(
    'k,people,groups', [(1, 4, 17), (2, 3, 2 + 1 + 4), (4, 2, 1 + 2), (8, 1, 1), (9, 0, 0)]
)
def test_groups_per_k_are_disjoint_photos_of_one_person(k, people, groups):
  g = accounts.account_groups(LABELS, k, seed=3)
  assert g.shape == (groups, k)
  assert np.unique(LABELS[g[:, 0]]).size == people
  for row in g:
    assert np.all(LABELS[row] == LABELS[row[0]])  # one person per group
  assert np.unique(g).size == g.size  # no photo twice, within a group or across groups


def test_groups_are_seeded():
  a = accounts.account_groups(LABELS, 2, seed=3)
  np.testing.assert_array_equal(a, accounts.account_groups(LABELS, 2, seed=3))
  assert not np.array_equal(a, accounts.account_groups(LABELS, 2, seed=4))
  with pytest.raises(ValueError, match='positive integer'):
    accounts.account_groups(LABELS, 0, seed=3)


def test_pooling_takes_the_highest_mean_log_probability():
  # Person 1's photo a alone says class 0; b says 1. Mean probabilities would still say 0 (0.455 vs
  # 0.325); mean log-probabilities say 1: (log .05 + log .6) / 2 = -1.75 beats (log .9 + log .01) /
  # 2 = -2.36 and (log .05 + log .39) / 2 = -1.97. Person 0 is right on both photos either way.
  probs = np.array([[0.9, 0.05, 0.05], [0.01, 0.6, 0.39], [0.7, 0.2, 0.1], [0.8, 0.1, 0.1]])
  labels = np.array([1, 1, 0, 0])
  out = accounts.pooled_top1(np.log(probs), labels, ks=(1, 2), seed=0)
  assert out[1]['top1'] == 0.75 and out[1]['num_groups'] == 4 and out[1]['num_people'] == 2
  assert out[2]['top1'] == 1.0 and out[2]['num_groups'] == 2 and out[2]['num_people'] == 2
  assert out[2]['chance_top1'] == pytest.approx(1 / 3)
  # logits pool to the same ranking as their log-softmax
  logits = np.log(probs) + np.array([[3.0], [-2.0], [0.5], [7.0]])
  assert accounts.pooled_top1(logits, labels, ks=(2,))[2]['top1'] == 1.0
  # original ids through the attacker's class map; an id it never saw is a miss
  ids = np.array([21, 21, 20, 20])
  assert (
      accounts.pooled_top1(np.log(probs), ids, (2,), class_map=ClassMap(np.array([20, 21])))[2][
          'top1'
      ]
      == 1.0
  )
  unseen = accounts.pooled_top1(np.log(probs), ids, (2,), class_map=ClassMap(np.array([20, 22])))
  assert unseen[2]['top1'] == 0.5
  with pytest.raises(ValueError, match='pass class_map'):
    accounts.pooled_top1(np.log(probs), ids, (2,))


def test_records_without_groups_and_the_clustered_standard_error():
  probs = np.full((3, 2), 0.5)
  out = accounts.pooled_top1(np.log(probs), [0, 0, 1], ks=(4,))
  assert out[4]['num_groups'] == 0 and out[4]['top1'] is None and out[4]['top1_se'] is None
  # Person A: both groups right; person B: both wrong. p = 1/2, residuals per person +1 and -1:
  # sqrt(2 / 1 * 2) / 4 = 0.5, twice the binomial sqrt(0.25 / 4) over the four groups.
  assert classification.clustered_se([1, 1, 0, 0], ['A', 'A', 'B', 'B']) == pytest.approx(0.5)
  # one group per person: the binomial, up to J / (J - 1)
  correct = np.array([1, 0, 1, 1, 0, 1, 1, 1], float)
  se = classification.clustered_se(correct, np.arange(8))
  assert se == pytest.approx(math.sqrt(8 / 7) * classification.binomial_se(0.75, 8))
  assert classification.clustered_se([1, 0], [5, 5]) is None


def test_pooled_embeddings_match_the_mean_descriptor():
  e = np.eye(4, 128, dtype=np.float32)
  gallery, gallery_labels = e[:2], np.array([5, 6])
  # Person 5's photos: one alone is nearer person 6, their mean is nearer 5.
  probes = np.stack([0.2 * e[0] + 0.5 * e[1], 1.5 * e[0] + 0.1 * e[1], e[1]])
  labels = np.array([5, 5, 6])
  out = accounts.pooled_embedding_top1(probes, labels, gallery, gallery_labels, ks=(1, 2))
  assert out[1]['top1'] == pytest.approx(2 / 3) and out[1]['num_groups'] == 3
  assert out[2]['top1'] == 1.0 and (out[2]['num_groups'], out[2]['num_people']) == (1, 1)
  assert out[2]['chance_top1'] == 0.5 and out[2]['top1_se'] is None  # one person


def test_averaged_upload_noise_has_variance_sigma2_over_k():
  clean = np.zeros((40_000, 8), np.float32)
  key = jax.random.key(0)
  for k in (1, 4):
    noise = np.asarray(accounts.averaged_uploads(key, clean, 2.0, k))
    # sampling error of a variance from 320,000 draws: sqrt(2 / n) ~ 0.25%
    assert np.var(noise) == pytest.approx(2.0 / k, rel=0.01)
  # the same as averaging k fresh uploads (in distribution)
  keys = jax.random.split(jax.random.key(1), 4)
  mean_of_k = np.mean([transforms.add_gaussian_noise(kk, clean, 2.0) for kk in keys], axis=0)
  assert np.var(mean_of_k) == pytest.approx(0.5, rel=0.01)
  # k = 1 is one upload: the device's own draw
  np.testing.assert_array_equal(
      accounts.averaged_uploads(key, clean[:10], 2.0, 1),
      transforms.add_gaussian_noise(key, clean[:10], 2.0),
  )
  # a per-feature variance (learned noise), divided by k feature by feature
  per_feature = np.array([0.0, 1.0, 4.0, 8.0] * 2)
  noise = np.asarray(accounts.averaged_uploads(key, clean + 3.0, per_feature, 4)) - 3.0
  np.testing.assert_allclose(np.var(noise, axis=0), per_feature / 4, rtol=0.04, atol=1e-12)
  with pytest.raises(ValueError, match='positive integer'):
    accounts.averaged_uploads(key, clean, 1.0, 0)
  with pytest.raises(ValueError, match='finite and >= 0'):
    accounts.averaged_uploads(key, clean, -1.0, 2)
