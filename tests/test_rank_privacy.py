"""Tests for privjax.metrics.rank_privacy."""

import math

import numpy as np
import pytest

from privjax.metrics.rank_privacy import (
    class_ranks,
    log_rank_privacy,
    rank_privacy,
    rank_privacy_reference,
    sample_ranks,
    summarize_ranks,
)

pytestmark = pytest.mark.unit


def _argsort_ranks(clean, noisy):
  """Independent reference: position in a likelihood-sorted candidate list,
  moved to the front of its tie group."""
  f = np.asarray(clean, np.float64).reshape(len(clean), -1)
  z = np.asarray(noisy, np.float64).reshape(len(noisy), -1)
  ranks = []
  for i in range(len(f)):
    dist = ((z[i] - f) ** 2).sum(1)
    order = np.argsort(dist, kind="stable")
    sorted_d = dist[order]
    pos = int(np.where(order == i)[0][0])
    while pos > 0 and sorted_d[pos - 1] == dist[i]:
      pos -= 1
    ranks.append(pos + 1)
  return np.array(ranks)


@pytest.mark.parametrize("n,d,block", [(37, 5, 8), (50, 3, 50), (23, 4, 1000), (41, 2, 7)])
def test_matches_reference_random(n, d, block):
  rng = np.random.default_rng(n)
  clean = rng.normal(size=(n, d)).astype(np.float32)
  noisy = clean + rng.normal(scale=0.8, size=(n, d)).astype(np.float32)
  ranks = np.asarray(sample_ranks(clean, noisy, block_size=block))
  ref = rank_privacy_reference(clean, noisy)
  np.testing.assert_array_equal(ranks, ref["ranks"])
  np.testing.assert_array_equal(ranks, _argsort_ranks(clean, noisy))
  got = rank_privacy(clean, noisy, block_size=block)
  for key in ["mean_normalized_rank", "fraction_first", "mean_log_rank", "normalized_log_rank"]:
    assert got[key] == pytest.approx(ref[key], abs=1e-12), key
  assert 0 < got["mean_normalized_rank"] < 0.5  # moderate noise: some but not all re-identified


def test_ties_and_spatial_inputs():
  # Small integers keep every float32 product exact, so ties are exact.
  rng = np.random.default_rng(0)
  clean = rng.integers(0, 3, size=(30, 2, 2, 1)).astype(np.float32)  # many duplicate rows
  noisy = clean + rng.integers(-1, 2, size=clean.shape).astype(np.float32)
  ranks = np.asarray(sample_ranks(clean, noisy, block_size=7))
  ref = rank_privacy_reference(clean, noisy)["ranks"]
  np.testing.assert_array_equal(ranks, ref)
  np.testing.assert_array_equal(ranks, _argsort_ranks(clean, noisy))
  # duplicates of the true sample tie with it and must not push it down
  dup = np.zeros((4, 3), np.float32)
  dup[2] = 1.0
  np.testing.assert_array_equal(np.asarray(sample_ranks(dup, dup)), [1, 1, 1, 1])


def test_hand_example():
  clean = np.array([[0.0], [1.0], [3.0]], np.float32)
  noisy = np.array([[0.9], [1.0], [1.9]], np.float32)
  # z0=0.9: d=(0.81, 0.01, 4.41) -> true idx0 second; z1: first;
  # z2=1.9: d=(3.61, 0.81, 1.21) -> true idx2 second
  np.testing.assert_array_equal(np.asarray(sample_ranks(clean, noisy)), [2, 1, 2])
  r = rank_privacy(clean, noisy)
  assert r["mean_normalized_rank"] == pytest.approx((0.5 + 0 + 0.5) / 3)
  assert r["fraction_first"] == pytest.approx(1 / 3)
  assert r["mean_log_rank"] == pytest.approx(2 * math.log(2) / 3)
  assert r["max_log_rank"] == pytest.approx(math.log(3))
  assert r["normalized_log_rank"] == pytest.approx(2 * math.log(2) / 3 / math.log(3))
  # Standard errors of the means over the three samples: sample sd / sqrt(3).
  assert r["mean_normalized_rank_se"] == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
  assert r["fraction_first_se"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
  log2 = math.log(2) / math.log(3)
  assert r["normalized_log_rank_se"] == pytest.approx(log2 / math.sqrt(3) / math.sqrt(3))


def test_no_noise_all_first_even_with_large_offset():
  rng = np.random.default_rng(1)
  # A large common offset is what makes the naive ||z||^2 - 2zf + ||f||^2
  # expansion cancel catastrophically in float32.
  clean = (0.1 * rng.normal(size=(300, 16)) + 1000.0).astype(np.float32)
  r = rank_privacy(clean, clean, block_size=64)
  assert r["mean_normalized_rank"] == 0.0
  assert r["fraction_first"] == 1.0
  assert r["mean_log_rank"] == 0.0


def test_huge_noise_is_random():
  rng = np.random.default_rng(2)
  n = 500
  clean = rng.normal(size=(n, 8)).astype(np.float32)
  noisy = clean + rng.normal(scale=1e4, size=(n, 8)).astype(np.float32)
  r = rank_privacy(clean, noisy, block_size=128)
  assert abs(r["mean_normalized_rank"] - 0.5) < 0.05
  assert r["fraction_first"] < 0.02
  # E[log U{1..N}] = log(N!)/N ~ log N - 1 for uniform ranks
  expected = math.lgamma(n + 1) / n
  assert abs(r["mean_log_rank"] - expected) < 0.15


def test_class_ranks_hand_example():
  logits = np.array(
      [
          [0.1, 2.0, 0.5, 1.0],  # label 1 is top -> 1
          [0.1, 2.0, 0.5, 1.0],  # label 0 is last -> 4
          [3.0, 3.0, 1.0, 3.0],  # label 3 ties with two others -> 1
          [0.0, 1.0, 2.0, 1.0],  # label 1 ties with 3, below 2 -> 2
      ],
      np.float32,
  )
  labels = np.array([1, 0, 3, 1])
  np.testing.assert_array_equal(np.asarray(class_ranks(logits, labels)), [1, 4, 1, 2])
  r = log_rank_privacy(logits, labels)
  assert r["mean_log_rank"] == pytest.approx((math.log(4) + math.log(2)) / 4)
  assert r["max_log_rank"] == pytest.approx(math.log(4))
  assert r["fraction_first"] == pytest.approx(0.5)
  assert r["mean_normalized_rank"] == pytest.approx((0 + 1 + 0 + 1 / 3) / 4)
  with pytest.raises(ValueError):
    log_rank_privacy(logits, np.array([1, 0, 4, 1]))


def test_summarize_ranks_validates():
  with pytest.raises(ValueError):
    summarize_ranks(np.array([1, 5]), 4)
  with pytest.raises(ValueError):
    summarize_ranks(np.array([1]), 1)
  with pytest.raises(ValueError):
    sample_ranks(np.zeros((3, 2)), np.zeros((4, 2)))


# privjax.metrics.classification is tested here because it shares the
# class-ranking semantics (and no separate test file is assigned to it).
def test_topk_accuracy_hand_example():
  from privjax.metrics.classification import (
      chance_accuracy,
      majority_accuracy,
      topk_accuracy,
  )

  logits = np.array(
      [
          [0.1, 2.0, 0.5, 1.0],  # label 1: top-1
          [0.1, 2.0, 0.5, 1.0],  # label 3: 2nd
          [0.1, 2.0, 0.5, 1.0],  # label 2: 3rd
          [0.1, 2.0, 0.5, 1.0],  # label 0: last
          [1.0, 1.0, 1.0, 1.0],  # constant logits, label 3: top_k picks low indices
      ],
      np.float32,
  )
  labels = np.array([1, 3, 2, 0, 3])
  assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 5)
  assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 5)
  assert topk_accuracy(logits, labels, 3) == pytest.approx(3 / 5)
  assert topk_accuracy(logits, labels, 4) == pytest.approx(1.0)
  with pytest.raises(ValueError):
    topk_accuracy(logits, labels, 5)
  assert chance_accuracy(labels) == pytest.approx(1 / 4)
  assert chance_accuracy(labels, k=2) == pytest.approx(1 / 2)
  assert chance_accuracy(labels, num_classes=10) == pytest.approx(1 / 10)
  assert majority_accuracy(labels) == pytest.approx(2 / 5)


def test_binomial_standard_error_by_hand():
  from privjax.metrics.classification import binomial_se

  assert binomial_se(0.36, 1000) == pytest.approx(math.sqrt(0.36 * 0.64 / 1000))  # 0.0152
  assert binomial_se(0.5, 4) == pytest.approx(0.25)
  assert binomial_se(0.0, 10) == 0.0 and binomial_se(1.0, 10) == 0.0
  with pytest.raises(ValueError):
    binomial_se(0.5, 0)
  with pytest.raises(ValueError):
    binomial_se(1.5, 10)
