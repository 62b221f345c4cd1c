"""Tests for the synthetic faces: the renderer (face_renderer), protocol splits and TFDS builder
(synthetic_faces)."""

import hashlib
import json
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from privjax.data import builder_base, digest
from privjax.data import face_renderer as fr
from privjax.data import synthetic_faces as sf

pytestmark = pytest.mark.unit

TINY = dict(num_identities=24, images_per_identity=12, image_size=64, seed=0)


@pytest.fixture(scope='module')
def tiny():
  return fr.generate_faces(**TINY)


def _per_identity(x, ipi=TINY['images_per_identity']):
  return x.reshape(-1, ipi, *x.shape[1:])


def test_same_seed_same_bytes_other_seed_differs(tiny):
  again = fr.generate_faces(**TINY)
  assert set(again) == {'image', 'identity', 'gender', 'smiling'}
  for k in tiny:
    np.testing.assert_array_equal(again[k], tiny[k])
  other = fr.generate_faces(**{**TINY, 'seed': 1})
  assert np.mean(other['image'] != tiny['image']) > 0.5
  assert not np.array_equal(other['gender'], tiny['gender'])


def test_shapes_dtypes_and_identity_order(tiny):
  n = TINY['num_identities'] * TINY['images_per_identity']
  assert tiny['image'].shape == (n, 64, 64, 3) and tiny['image'].dtype == np.uint8
  for k in ('identity', 'gender', 'smiling'):
    assert tiny[k].shape == (n,) and tiny[k].dtype == np.int64
  np.testing.assert_array_equal(tiny['identity'], np.repeat(np.arange(24), 12))
  small = fr.generate_faces(5, 3, 16, 2)
  assert small['image'].shape == (15, 16, 16, 3)


def test_worker_count_does_not_change_output(monkeypatch):
  # Chunks are rendered by threads into a shared buffer; a race or a
  # chunk-order dependence would show up here.
  monkeypatch.setattr(fr, '_MAX_WORKERS', 1)
  one = fr.generate_faces(6, 20, 32, 3)['image']
  monkeypatch.setattr(fr, '_MAX_WORKERS', 4)
  many = fr.generate_faces(6, 20, 32, 3)['image']
  np.testing.assert_array_equal(one, many)


class _NoNoise:
  """Stands in for the noise generator: random() == 0.5 means zero noise."""

  def random(self, shape, dtype):
    return np.full(shape, 0.5, dtype)


def test_window_and_subset_rendering_is_exact():
  # Shapes are evaluated only inside per-batch pixel windows and rare layers
  # only on the images having them; an image must render identically alone
  # and inside a batch, i.e. nothing is cut off by a too-small window.
  traits = fr._identity_traits(12, 4)
  p = fr._image_params(traits, 5, 4)
  idx = np.arange(60)
  p['glasses'][::3] = 1.0  # make sure the subset paths run
  p['hat'][1::4] = 1.0
  batch = fr._render_chunk(p, idx, 48, _NoNoise())
  for i in range(len(idx)):
    alone = fr._render_chunk(p, idx[i : i + 1], 48, _NoNoise())
    np.testing.assert_array_equal(alone[0], batch[i])


def test_gender_fixed_per_identity_and_balanced(tiny):
  g = _per_identity(tiny['gender'])
  assert np.all(g == g[:, :1])
  assert g[:, 0].sum() == 12
  for n in (200, 25, 2):
    genders = fr.identity_genders(n, 7)
    assert genders.sum() == n // 2
  # gender is drawn from its own stream: more images per person keep it
  np.testing.assert_array_equal(fr.generate_faces(24, 2, 16, 0)['gender'][::2], g[:, 0])


def test_smiling_varies_within_every_identity(tiny):
  s = _per_identity(tiny['smiling'])
  np.testing.assert_array_equal(s.sum(1), np.full(24, 6))
  assert not np.all(s == s[:1])  # not the same pattern for everyone
  odd = _per_identity(fr.generate_faces(30, 5, 16, 1)['smiling'], 5).sum(1)
  assert set(odd.tolist()) <= {2, 3} and 0.3 < odd.mean() / 5 < 0.7


@pytest.mark.parametrize('n, seed', [(200, 0), (24, 0), (37, 5), (10, 1)])
def test_identity_groups_disjoint_stratified(n, seed):
  groups = sf.identity_groups(n, seed)
  assert set(groups) == {'owner_train', 'owner_test', 'attacker'}
  all_ids = sum(groups.values(), [])
  assert sorted(all_ids) == list(range(n))  # disjoint and covering
  for ids in groups.values():
    assert ids == sorted(ids)
  n_owner = int(np.floor(0.5 * n + 0.5))
  n_test = int(np.floor(0.25 * n_owner + 0.5))
  assert len(groups['owner_test']) == n_test
  assert len(groups['owner_train']) == n_owner - n_test
  gender = fr.identity_genders(n, seed)
  for ids in groups.values():
    male = gender[ids].sum()
    assert abs(2 * male - len(ids)) <= (1 if n % 2 == 0 else 2), (ids, male)
  assert sf.identity_groups(n, seed) == groups
  if n >= 24:
    assert sf.identity_groups(n, seed + 1) != groups


def test_identity_groups_accepts_per_image_gender(tiny):
  assert sf.identity_groups(24, 0, tiny['gender']) == sf.identity_groups(24, 0)
  bad = tiny['gender'].copy()
  bad[1] = 1 - bad[1]
  with pytest.raises(ValueError):
    sf.identity_groups(24, 0, bad)
  with pytest.raises(ValueError):
    sf.identity_groups(2, 0)  # too few people for three groups


def test_split_indices_follow_protocol(tiny):
  groups = sf.identity_groups(24, 0)
  idx = sf.split_indices(24, 12, 0)
  ident = tiny['identity']
  assert set(ident[idx['train']]) == set(groups['owner_train'])
  assert set(ident[idx['test']]) == set(groups['owner_test'])
  # owner splits hold every image of their people
  assert len(idx['train']) == 12 * len(groups['owner_train'])
  assert len(idx['test']) == 12 * len(groups['owner_test'])
  # closed-set attacker: same people on both sides, disjoint images, 6/6 each
  for split in ('attacker_train', 'attacker_test'):
    ids, counts = np.unique(ident[idx[split]], return_counts=True)
    assert ids.tolist() == groups['attacker'] and np.all(counts == 6)
  assert not set(idx['attacker_train']) & set(idx['attacker_test'])
  every = np.concatenate([idx[s] for s in sf.SPLITS])
  np.testing.assert_array_equal(np.sort(every), np.arange(288))  # each image once
  for v in idx.values():
    assert np.all(np.diff(v) > 0)
  # the attacker halves are a random choice, not simply first/second half
  first_half = (idx['attacker_train'] % 12) < 6
  assert not np.all(first_half)


def _sq_dists(img):
  flat = img.reshape(len(img), -1)
  sq = (flat * flat).sum(1)
  return np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0)


def test_images_are_not_degenerate(tiny):
  img = tiny['image'].astype(np.float64)
  assert np.all(img.reshape(len(img), -1).std(1) > 15)
  same = tiny['identity'][:, None] == tiny['identity'][None]
  off_diag = ~np.eye(len(img), dtype=bool)
  d2 = _sq_dists(img)
  assert d2[same & off_diag].min() > 0  # no duplicated images
  assert d2[same & off_diag].mean() < d2[~same].mean()
  # Random backgrounds dominate whole-image distances; on the face region the
  # identity signal must be clear (~0.75 here; 1.0 = no identity signal).
  face = _sq_dists(img[:, 12:52, 12:52])
  assert face[same & off_diag].mean() < 0.85 * face[~same].mean()


def test_expression_changes_the_mouth_only():
  # Same person, pose, light and background; only `smiling` flipped.
  traits = fr._identity_traits(8, 2)
  p = fr._image_params(traits, 4, 2)
  idx = np.arange(32)
  a = fr._render_chunk(p, idx, 64, _NoNoise()).astype(int)
  p['smiling'] = 1 - p['smiling']
  b = fr._render_chunk(p, idx, 64, _NoNoise()).astype(int)
  diff = np.abs(a - b).max(-1)
  assert np.all(diff.reshape(32, -1).max(1) > 60)  # visible in every image
  rows, cols = np.nonzero(diff.max(0) > 0)
  assert rows.min() >= 32 and rows.max() < 56  # below the eyes, above the chin
  assert cols.min() >= 14 and cols.max() < 50


def test_config_names_and_lookup():
  default = sf.make_config()
  assert default is sf.SyntheticFaces.builder_configs['default']
  assert (
      default.num_identities,
      default.images_per_identity,
      default.image_size,
      default.seed,
  ) == (200, 40, 64, 0)
  assert sf.make_config(**TINY) is sf.SyntheticFaces.builder_configs['tiny']
  cfg = sf.make_config(10, 4, 32, 3)
  assert cfg.name == 'ids10_img4_s32_seed3'
  assert sf.SyntheticFaces.get_builder_config(cfg.name).params() == cfg.params()
  frac = sf.make_config(40, 4, 32, 3, owner_fraction=0.6, owner_test_fraction=0.2)
  assert frac.name == 'ids40_img4_s32_seed3_own0p6_test0p2'
  assert sf.SyntheticFaces.get_builder_config(frac.name).params() == frac.params()
  assert sf.SyntheticFaces.get_builder_config('nonsense') is None


def test_builder_end_to_end_without_tensorflow(tmp_path, tiny):
  builder = sf.build('tiny', data_dir=str(tmp_path))
  assert builder.info.file_format.value == 'array_record'
  idx = sf.split_indices(24, 12, 0)
  for split in sf.SPLITS:
    ds = builder.as_data_source(split)
    assert len(ds) == len(idx[split])
    for k in range(len(ds)):
      ex = ds[k]
      i = idx[split][k]
      assert ex['image'].dtype == np.uint8 and ex['image'].shape == (64, 64, 3)
      np.testing.assert_array_equal(ex['image'], tiny['image'][i])
      assert (ex['identity'], ex['gender'], ex['smiling']) == (
          tiny['identity'][i],
          tiny['gender'][i],
          tiny['smiling'][i],
      )
  ds = tfds.data_source('synthetic_faces/tiny', split='attacker_test', data_dir=str(tmp_path))
  np.testing.assert_array_equal(ds[3]['image'], tiny['image'][idx['attacker_test'][3]])
  assert builder.info.features['identity'].num_classes == 24

  # identity groups come back from the files alone, not recomputed by code
  groups = sf.identity_groups(24, 0)
  assert builder_base.split_identities(builder) == groups
  assert os.path.exists(os.path.join(builder.data_dir, 'metadata.json'))
  from_files = tfds.builder_from_directory(builder.data_dir)
  assert builder_base.split_identities(from_files) == groups

  # The content digest, computed here from its documented format: a JSON header line, then one
  # line per example (split, sha256 of the pixels, labels by class name), split by split.
  def line(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':')) + '\n'

  text = line({'generator': 1, 'version': '1.1.0'})
  for split in sf.SPLITS:
    for i in idx[split]:
      labels = {
          'identity': str(tiny['identity'][i]),
          'gender': ('female', 'male')[tiny['gender'][i]],
          'smiling': ('no', 'yes')[tiny['smiling'][i]],
      }
      text += line([split, hashlib.sha256(tiny['image'][i].tobytes()).hexdigest(), labels])
  want = hashlib.sha256(text.encode()).hexdigest()[:20]
  assert digest.of_builder(builder) == digest.of_builder(from_files) == want

  # idempotent: a second build reuses the prepared files
  record = os.path.join(builder.data_dir, 'synthetic_faces-train.array_record-00000-of-00001')
  mtime = os.stat(record).st_mtime_ns
  again = sf.build(sf.make_config(**TINY), data_dir=str(tmp_path))
  assert again.data_dir == builder.data_dir
  assert os.stat(record).st_mtime_ns == mtime
  assert 'tensorflow' not in sys.modules


def test_custom_config_builds_and_loads_by_name(tmp_path):
  cfg = sf.make_config(8, 4, 16, 1)
  sf.build(cfg, data_dir=str(tmp_path))
  data = fr.generate_faces(8, 4, 16, 1)
  idx = sf.split_indices(8, 4, 1)
  # Loaded by name: TFDS reads the prepared files for unregistered configs.
  ds = tfds.data_source(f'synthetic_faces/{cfg.name}', split='train', data_dir=str(tmp_path))
  assert len(ds) == len(idx['train'])
  np.testing.assert_array_equal(ds[0]['image'], data['image'][idx['train'][0]])


def test_data_source_prepares_canonical_name_on_demand(tmp_path):
  # No build() call: TFDS constructs the builder from the name alone, which
  # needs the canonical-name parsing and the array_record default format.
  ds = tfds.data_source(
      'synthetic_faces/ids6_img4_s16_seed9', split='attacker_test', data_dir=str(tmp_path)
  )
  data = fr.generate_faces(6, 4, 16, 9)
  idx = sf.split_indices(6, 4, 9)['attacker_test']
  assert len(ds) == len(idx)
  np.testing.assert_array_equal(ds[len(ds) - 1]['image'], data['image'][idx[-1]])
