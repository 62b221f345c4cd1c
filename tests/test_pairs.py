"""Pair sampler: balance, label semantics, determinism."""

import numpy as np
import pytest

from privjax.data.pairs import PairSampler

pytestmark = pytest.mark.unit


def test_pairs_are_balanced_and_labelled_correctly():
  labels = np.array([0] * 30 + [1] * 10 + [2] * 5)
  sampler = PairSampler(labels, seed=3)
  pairs = [sampler[i] for i in range(2000)]
  same = np.array([s for _, _, s in pairs])
  assert same.mean() == 0.5
  for a, b, s in pairs:
    assert a != b
    assert (labels[a] == labels[b]) == s
  # Anchors follow the data distribution: class 0 holds 2/3 of the examples.
  anchors = np.array([labels[a] for a, _, _ in pairs])
  assert abs((anchors == 0).mean() - 30 / 45) < 0.05
  # Every example of a class can be drawn as a same-label partner.
  partners = {b for a, b, s in pairs if s and labels[a] == 2}
  assert partners == set(range(40, 45))


def test_every_even_batch_is_exactly_half_same():
  sampler = PairSampler(np.array([0, 1] * 20), seed=0)
  for start in range(0, 64, 8):
    assert sum(sampler[i][2] for i in range(start, start + 8)) == 4


def test_pairs_are_a_pure_function_of_seed_and_index():
  labels = np.arange(100) % 2
  assert [PairSampler(labels, 1)[i] for i in range(50)] == [
      PairSampler(labels, 1)[i] for i in range(50)
  ]
  assert [PairSampler(labels, 1)[i] for i in range(50)] != [
      PairSampler(labels, 2)[i] for i in range(50)
  ]


def test_single_class_is_an_error():
  with pytest.raises(ValueError, match='at least 2 classes'):
    PairSampler(np.zeros(10), seed=0)
