"""Balanced same/different pair sampling for Siamese training.

What lives here: `PairSampler`, a random-access map from a global example counter to a pair of
indices, so any step's batch can be regenerated exactly (resume needs no iterator state).
Must not import jax, TensorFlow or tensorflow_datasets: it sees label arrays only.
"""

from __future__ import annotations

import numpy as np


class PairSampler:
  """Pair `i` is same-label when `i` is even, different-label when odd.

  With an even batch size every batch therefore holds exactly half same and half different pairs.
  The anchor is uniform over examples (so classes appear at their data frequency); its partner is
  uniform over the other examples of the anchor's class, or over all examples of other classes.
  """

  def __init__(self, labels: np.ndarray, seed: int):
    self.labels = np.asarray(labels)
    self.seed = int(seed)
    classes, counts = np.unique(self.labels, return_counts=True)
    if len(classes) < 2:
      raise ValueError(
          f'pairs need at least 2 classes of the primary label, found {classes.tolist()}'
      )
    if counts.min() < 2:
      raise ValueError(
          f'every class needs >= 2 examples for same-label pairs; counts {counts.tolist()}'
      )
    self._by_class = {c: np.flatnonzero(self.labels == c) for c in classes}
    self._not_class = {c: np.flatnonzero(self.labels != c) for c in classes}

  def __getitem__(self, i: int) -> tuple[int, int, bool]:
    rng = np.random.default_rng((self.seed, int(i)))
    a = int(rng.integers(len(self.labels)))
    c = self.labels[a]
    same = i % 2 == 0
    if same:
      members = self._by_class[c]
      j = int(rng.integers(len(members) - 1))
      # Skip the anchor itself: shift indices at or past it by one.
      pos = int(np.searchsorted(members, a))
      b = int(members[j + (j >= pos)])
    else:
      others = self._not_class[c]
      b = int(others[rng.integers(len(others))])
    return a, b, same
