"""The paper's identity-based protocol splits, shared by every privjax face data set.

What lives here:

* ``identity_groups`` -- disjoint identity groups: model-owner identities (``owner_train`` /
  ``owner_test``, so ``train`` and ``test`` are disjoint *people*) versus ``attacker``
  identities, stratified by a per-identity label (gender) so that every group is balanced.
* ``split_rows`` -- the rows (images) of each split: all images of the owner identities in
  ``train`` / ``test``; each attacker identity's images halved at random between
  ``attacker_train`` and ``attacker_test`` (closed-set re-identification: the same people on
  both sides, disjoint images).
* ``per_identity_mode`` -- the stratification label of each identity from per-image labels.

Everything is a pure function of its inputs and the given random generators, so a data set's
splits are reproducible from its seed.  Must not import TensorFlow Datasets, jax or anything
from privjax: it is plain numpy, used by the builders.
"""

from __future__ import annotations

import math

import numpy as np

SPLITS = ('train', 'test', 'attacker_train', 'attacker_test')
GROUPS = ('owner_train', 'owner_test', 'attacker')
DEFAULT_OWNER_FRACTION = 0.5
DEFAULT_OWNER_TEST_FRACTION = 0.25
DEFAULT_MIN_IMAGES_PER_IDENTITY = 4


def round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))  # no banker's rounding surprises


def check_fractions(owner_fraction: float, owner_test_fraction: float) -> None:
  if not 0.0 < owner_fraction < 1.0 or not 0.0 < owner_test_fraction < 1.0:
    raise ValueError(
        'owner_fraction and owner_test_fraction must lie strictly between 0 and 1, '
        f'got {owner_fraction} and {owner_test_fraction}'
    )


def per_identity_mode(identity: np.ndarray, labels: np.ndarray, num_identities: int) -> np.ndarray:
  """Most frequent label of each identity's images (ties: the smallest); -1 for no image."""
  identity = np.asarray(identity, np.int64)
  labels = np.asarray(labels, np.int64)
  out = np.full(num_identities, -1, np.int64)
  if identity.size == 0:
    return out
  counts = np.zeros((num_identities, int(labels.max()) + 1), np.int64)
  np.add.at(counts, (identity, labels), 1)
  seen = counts.sum(1) > 0
  out[seen] = counts[seen].argmax(1)  # argmax takes the first maximum
  return out


def _stratified_order(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A random identity order whose every prefix is balanced over the strata (to +-1 each).

  Each stratum is shuffled, then the strata are interleaved by relative rank.
  """
  keys = np.empty(strata.size)
  for g in np.unique(strata):
    ids = np.flatnonzero(strata == g)
    keys[rng.permutation(ids)] = (np.arange(ids.size) + 0.5) / ids.size
  return np.lexsort((strata, keys))


def identity_groups(
    strata: np.ndarray,
    rng: np.random.Generator,
    *,
    owner_fraction: float = DEFAULT_OWNER_FRACTION,
    owner_test_fraction: float = DEFAULT_OWNER_TEST_FRACTION,
    counts: np.ndarray | None = None,
    min_images_per_identity: int = 1,
) -> dict[str, list[int]]:
  """Disjoint identity groups {'owner_train', 'owner_test', 'attacker'} of sorted identity ids.

  `strata[i]` is identity i's stratification label (e.g. its gender); the groups cover every
  identity 0..len(strata)-1.  round(owner_fraction * N) identities go to the model owner and the
  rest to the attacker, except that an attacker identity needs at least
  `min_images_per_identity` images (`counts[i]`), since its images are split between attacker
  train and test: the attacker takes the eligible identities from the end of a stratified random
  order, and identities with too few images stay on the owner side (so when fewer identities are
  eligible than the attacker's share, all eligible ones are attackers and the owner side is
  larger).  round(owner_test_fraction * owner identities) of the owner identities form
  owner_test.
  """
  check_fractions(owner_fraction, owner_test_fraction)
  strata = np.asarray(strata).reshape(-1)
  n = strata.size
  order = _stratified_order(strata, rng)
  n_attacker = n - round_half_up(owner_fraction * n)
  if counts is None:
    eligible = np.ones(n, bool)
  else:
    eligible = np.asarray(counts).reshape(-1) >= min_images_per_identity
  # From the end of the order: all identities eligible reduces to order[n_owner:].
  candidates = order[eligible[order]]
  attacker = candidates[candidates.size - min(n_attacker, candidates.size) :]
  owner = order[~np.isin(order, attacker)]
  n_test = round_half_up(owner_test_fraction * owner.size)
  groups = {'owner_train': owner[n_test:], 'owner_test': owner[:n_test], 'attacker': attacker}
  for k, ids in groups.items():
    if ids.size == 0:
      if k == 'attacker' and n_attacker > 0:
        raise ValueError(
            f'identity group {k!r} is empty: no identity has >= '
            f'{min_images_per_identity} images (min_images_per_identity)'
        )
      raise ValueError(
          f'identity group {k!r} is empty; {n} identities are too few for owner '
          'train, owner test and attacker groups'
      )
  return {k: sorted(int(i) for i in groups[k]) for k in GROUPS}


def split_rows(
    identity: np.ndarray, groups: dict[str, list[int]], rng: np.random.Generator
) -> dict[str, np.ndarray]:
  """Sorted row indices (into `identity`, one entry per image) of each split in SPLITS.

  train/test: every image of the owner_train/owner_test identities.  attacker_train /
  attacker_test: each attacker identity's images (in row order) permuted at random and halved,
  the odd image going to attacker_train; one uniform draw per attacker image, identity by
  identity in increasing id order.
  """
  identity = np.asarray(identity, np.int64).reshape(-1)
  out = {
      'train': np.flatnonzero(np.isin(identity, groups['owner_train'])),
      'test': np.flatnonzero(np.isin(identity, groups['owner_test'])),
  }
  attacker = np.asarray(groups['attacker'], np.int64)
  rows = np.flatnonzero(np.isin(identity, attacker))
  rows = rows[np.argsort(identity[rows], kind='stable')]  # grouped by id, row order within
  starts = np.searchsorted(identity[rows], attacker)
  ends = np.append(starts[1:], rows.size)
  draws = rng.random(rows.size)
  train, test = [], []
  for i, s, e in zip(attacker, starts, ends):
    if e - s < 2:
      raise ValueError(
          f'attacker identity {int(i)} has {e - s} image(s); the attacker splits '
          'need >= 2 per identity'
      )
    perm = rows[s:e][np.argsort(draws[s:e], kind='stable')]
    n_train = (e - s) - (e - s) // 2
    train.append(perm[:n_train])
    test.append(perm[n_train:])
  out['attacker_train'] = np.sort(np.concatenate(train)).astype(np.int64)
  out['attacker_test'] = np.sort(np.concatenate(test)).astype(np.int64)
  return {k: out[k].astype(np.int64) for k in SPLITS}
