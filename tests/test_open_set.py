"""Open-set identity: TAR at FAR and gallery top-1 on hand-built scores and embeddings, the
gallery/probe split, and an MLP embedding that matches people it never saw."""

import numpy as np
import pytest

from privjax.attacks import open_set
from privjax.attacks.common import ClassMap

pytestmark = pytest.mark.unit

FARS = ('0.01', '0.001')


def test_tar_at_far_on_a_hand_built_score_matrix():
  # 4 probes of people 7, 8, 9, 7 against templates of 7, 8, 9: genuine on the probe's own column.
  scores = np.array(
      [
          [0.95, 0.90, 0.20],
          [0.70, 0.80, 0.10],
          [0.50, 0.40, 0.60],
          [0.45, 0.30, 0.00],
      ]
  )
  genuine, impostor = open_set.genuine_and_impostor(
      scores, [7, 8, 9, 7], ClassMap(np.array([7, 8, 9]))
  )
  np.testing.assert_array_equal(genuine, [0.95, 0.80, 0.60, 0.45])
  np.testing.assert_array_equal(np.sort(impostor)[::-1], [0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
  # FAR 1/4 of 8 impostors: 2 may pass, the threshold is the 3rd highest (0.5), accept > 0.5.
  r = open_set.tar_at_far(genuine, impostor, 0.25)
  assert (r['threshold'], r['tar'], r['far'], r['resolved']) == (0.5, 0.75, 0.25, True)
  assert r['tar_se'] == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
  r = open_set.tar_at_far(genuine, impostor, 0.125)
  assert (r['threshold'], r['tar'], r['far']) == (0.7, 0.5, 0.125)
  # FAR 0.1 of 8 impostors is below one impostor: the highest impostor is the threshold.
  r = open_set.tar_at_far(genuine, impostor, 0.1)
  assert (r['threshold'], r['tar'], r['far'], r['resolved']) == (0.9, 0.25, 0.0, False)


def test_tar_at_far_counts_exactly_at_1e_2_and_1e_3():
  impostor = np.arange(1000) / 1000.0  # 0.000 .. 0.999
  genuine = np.array([0.5, 0.989, 0.9895, 0.995, 0.9995])
  r = open_set.tar_at_far(genuine, impostor, 1e-2)  # 10 may pass: threshold 0.989, strict >
  assert (r['threshold'], r['far'], r['tar']) == (0.989, 0.01, 0.6)
  r = open_set.tar_at_far(genuine, impostor, 1e-3)  # 1 may pass: threshold 0.998
  assert (r['threshold'], r['far'], r['tar'], r['resolved']) == (0.998, 0.001, 0.2, True)
  with pytest.raises(ValueError):
    open_set.tar_at_far(genuine, impostor, 0.0)


def test_split_puts_every_person_in_gallery_and_probe_and_no_image_in_both():
  labels = np.repeat([3, 5, 11, 12], [4, 2, 7, 1])  # person 12 has a single image
  gallery, probe = open_set.gallery_probe_split(labels, seed=0, gallery_per_person=2)
  assert np.intersect1d(gallery, probe).size == 0
  assert set(labels[gallery]) == set(labels[probe]) == {3, 5, 11}
  assert 13 not in gallery and 13 not in probe  # the single image of person 12
  np.testing.assert_array_equal(np.bincount(labels[gallery])[[3, 5, 11]], [2, 1, 2])
  assert gallery.size + probe.size == labels.size - 1
  again = open_set.gallery_probe_split(labels, seed=0, gallery_per_person=2)
  np.testing.assert_array_equal(again[0], gallery)
  other = open_set.gallery_probe_split(labels, seed=1, gallery_per_person=2)
  assert not np.array_equal(other[0], gallery)


def test_gallery_top1_on_a_constructed_embedding():
  # 4 people x 5 images; embeddings are the person's axis, at any positive scale (cosine), except
  # 3 probes drawn on another person's axis: exactly those are misidentified.
  labels = np.repeat([10, 20, 30, 40], 5)
  gallery, probe = open_set.gallery_probe_split(labels, seed=4)
  rng = np.random.default_rng(0)
  x = np.eye(4)[labels // 10 - 1] * rng.uniform(0.5, 3.0, size=(20, 1))
  wrong = probe[[0, 5, 9]]
  x[wrong] = np.roll(x[wrong], 1, axis=1)
  report = open_set.open_set_identity(lambda v: v, x, labels, seed=4, fars=(0.1,))
  assert report['num_people'] == 4 and report['num_gallery'] == 4 and report['num_probe'] == 16
  assert report['gallery_top1'] == 13 / 16 and report['chance_top1'] == 0.25
  # Impostor scores are 0 except the 3 misplaced probes' 1 each; 48 impostors, FAR 0.1: 4 may
  # pass, so the threshold is 0 and the 13 genuine scores of 1 pass.
  r = report['tar_at_far']['0.1']
  assert (r['num_impostor'], r['threshold'], r['tar']) == (48, 0.0, 13 / 16)
  with pytest.raises(ValueError, match='unseen'):
    open_set.open_set_identity(lambda v: v, x, labels, seen=[40, 50])


def people(num_people, per_person, *, first, seed, dim=64, signal=8):
  """Identity in `signal` dims, strong nuisance in the rest: raw cosine is dominated by nuisance."""
  rng = np.random.default_rng(seed)
  codes = np.random.default_rng(1000 + first).normal(size=(num_people, signal)) * 2.0
  labels = np.repeat(np.arange(num_people), per_person)
  x = np.concatenate(
      [
          codes[labels] + 0.5 * rng.normal(size=(labels.size, signal)),
          3.0 * rng.normal(size=(labels.size, dim - signal)),
      ],
      axis=1,
  )
  return x.astype(np.float32), labels + first


def test_mlp_embedding_matches_unseen_people_better_than_raw_features():
  x, y = people(30, 40, first=0, seed=0)
  embed, attacker = open_set.fit_embedder(x, y, hidden=(64,), max_epochs=60, batch_size=32, seed=0)
  assert embed(x[:3]).shape == (3, 64)
  x_new, y_new = people(40, 6, first=100, seed=1)
  learned = open_set.open_set_identity(embed, x_new, y_new, seed=0, seen=y)
  raw = open_set.open_set_identity(lambda v: v, x_new, y_new, seed=0)
  # 200 probes x 39 other people = 7800 impostor scores: FAR 1e-3 is resolved (7 may pass).
  assert learned['tar_at_far']['0.001']['resolved'] and learned['num_probe'] == 200
  # Measured: learned TAR 0.615 / 0.375 at FAR 1e-2 / 1e-3, top-1 0.745; raw 0.01 / 0 / 0.035.
  tar = {far: (learned['tar_at_far'][far]['tar'], raw['tar_at_far'][far]['tar']) for far in FARS}
  assert tar['0.01'][0] > tar['0.01'][1] + 0.3 and tar['0.001'][0] > tar['0.001'][1] + 0.2, tar
  assert learned['gallery_top1'] > raw['gallery_top1'] + 0.4, (learned, raw)
  with pytest.raises(ValueError, match='hidden layer'):
    open_set.fit_embedder(x, y, hidden=(), max_epochs=1)
