"""image_folder (your own photos in a CSV) and the identity-split mechanism every builder shares."""

import csv
import hashlib
import logging
import os
import shutil
import sys
import threading

import ml_collections
import numpy as np
import pytest
from PIL import Image

from privjax import config as config_lib
from privjax import errors
from privjax.data import face_renderer, photo_builder, pipeline, splits
from privjax.data import image_folder as imf
from privjax.data import synthetic_faces as sf

pytestmark = pytest.mark.e2e

ROOT = os.path.join(os.path.dirname(__file__), '..')
NUM_IDS, PER_ID = 10, 6
# Identity 'p9' has only 3 photos listed: too few to be an attacker identity.
SHORT_ID = 9
BAD = ('img/missing.jpg', 'img/broken.jpg', 'img/cut.jpg')  # listed, but skipped
SKIPPED = len(BAD)


def _write_folder(folder, rows_extra=()):
  """Synthetic faces saved as photos of mixed sizes, formats and modes, plus a CSV."""
  data = face_renderer.generate_faces(NUM_IDS, PER_ID, 48, 3)
  os.makedirs(os.path.join(folder, 'img'), exist_ok=True)
  rng = np.random.default_rng(0)
  rows = []
  for i, (img, ident, g, s) in enumerate(
      zip(data['image'], data['identity'], data['gender'], data['smiling'])
  ):
    if ident == SHORT_ID and i % PER_ID >= 3:
      continue
    w, h = (int(v) for v in rng.integers(40, 130, 2))
    im = Image.fromarray(img).resize((w, h))
    if i % 3 == 0:
      name, im = f'img/{i}.png', (im.convert('L') if i % 2 else im.convert('RGBA'))
    else:
      name = f'img/{i}.jpg'
    im.save(os.path.join(folder, name))
    rows.append([name, f'p{ident}', ['female', 'male'][g], int(s), 'ignored'])
  with open(os.path.join(folder, 'img', 'broken.jpg'), 'wb') as f:
    f.write(b'\xff\xd8\xff\xe0 this is not a jpeg')
  with open(os.path.join(folder, rows[2][0]), 'rb') as f:
    head = f.read()[:300]
  with open(os.path.join(folder, 'img', 'cut.jpg'), 'wb') as f:
    f.write(head)  # a truncated download: the header decodes, the pixels do not
  rows.insert(4, ['img/missing.jpg', 'p0', 'female', 0, ''])
  rows.insert(9, ['img/broken.jpg', 'p1', 'male', 1, ''])
  rows.insert(20, ['img/cut.jpg', 'p3', 'male', 1, ''])
  rows += list(rows_extra)
  path = os.path.join(folder, 'faces.csv')
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'identity', 'gender', 'smiling', 'notes'])
    writer.writerows(rows)
  return path, rows


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('photos'))
  return _write_folder(root)


@pytest.fixture(scope='module')
def built(folder, tmp_path_factory):
  csv_path, _ = folder
  data_dir = str(tmp_path_factory.mktemp('tfds_if'))
  return imf.build(data_dir=data_dir, csv=csv_path, attributes=('smiling',))


def _read(builder, split):
  ds = builder.as_data_source(split)
  return [ds[i] for i in range(len(ds))]


def test_splits_follow_the_protocol(built, folder):
  _, rows = folder
  names = built.info.features['identity'].names
  assert names == sorted(f'p{i}' for i in range(NUM_IDS))
  assert built.info.features['gender'].names == ['female', 'male']
  assert built.info.features['smiling'].names == ['0', '1']
  assert 'notes' not in built.info.features
  groups = built.info.metadata['splits']
  assert sorted(sum(groups.values(), [])) == list(range(NUM_IDS))  # disjoint and covering
  assert names.index(f'p{SHORT_ID}') not in groups['attacker']  # 3 photos < 4
  data = {s: _read(built, s) for s in splits.SPLITS}
  ids = {s: {int(e['identity']) for e in data[s]} for s in splits.SPLITS}
  assert ids['train'] == set(groups['owner_train']) and ids['test'] == set(groups['owner_test'])
  assert ids['attacker_train'] == ids['attacker_test'] == set(groups['attacker'])
  # Every kept photo exactly once over the four splits (all photos differ).
  digests = [hashlib.sha1(e['image'].tobytes()).hexdigest() for s in data for e in data[s]]
  assert len(digests) == len(set(digests)) == len(rows) - SKIPPED
  for e in data['attacker_train'] + data['attacker_test']:
    assert e['image'].shape == (64, 64, 3) and e['image'].dtype == np.uint8
  assert built.info.metadata['split_names']['attacker'] == [names[i] for i in groups['attacker']]


def test_rows_keep_csv_order_and_images_are_the_processed_files(built, folder):
  csv_path, rows = folder
  names = built.info.features['identity'].names
  train = _read(built, 'train')
  owner = {names[i] for i in built.info.metadata['splits']['owner_train']}
  expected = [r for r in rows if r[1] in owner and r[0] not in BAD]
  assert [names[e['identity']] for e in train] == [r[1] for r in expected]
  for e, r in list(zip(train, expected))[:4]:
    want = np.asarray(
        photo_builder.load_face(os.path.join(os.path.dirname(csv_path), r[0]), 64, 1.0)
    )
    np.testing.assert_array_equal(e['image'], want)
    assert e['gender'] == ['female', 'male'].index(r[2]) and e['smiling'] == r[3]


def test_missing_and_unreadable_files_are_reported_and_skipped(folder, tmp_path, caplog):
  csv_path, rows = folder
  with caplog.at_level(logging.WARNING):
    builder = imf.build(data_dir=str(tmp_path), csv=csv_path, seed=1)
  skipped = builder.info.metadata['skipped']
  assert skipped['count'] == SKIPPED
  assert any('missing.jpg: missing' in p for p in skipped['first'])
  assert any('broken.jpg: unreadable' in p for p in skipped['first'])
  assert any('cut.jpg: unreadable' in p for p in skipped['first'])
  assert f'skipped {SKIPPED} of {len(rows)} images' in caplog.text
  for bad in BAD:
    assert os.path.join(os.path.dirname(csv_path), bad) in caplog.text
  total = sum(builder.info.splits[s].num_examples for s in splits.SPLITS)
  assert total == len(rows) - SKIPPED


def test_same_seed_same_splits_other_seed_differs(built, folder, tmp_path):
  again = imf.build(data_dir=str(tmp_path / 'a'), csv=folder[0], attributes=('smiling',))
  assert again.info.metadata['splits'] == built.info.metadata['splits']
  other = imf.build(data_dir=str(tmp_path / 'b'), csv=folder[0], attributes=('smiling',), seed=5)
  assert other.builder_config.name != built.builder_config.name
  assert other.info.metadata['splits'] != built.info.metadata['splits']


def _dataset_cfg(**kwargs):
  return ml_collections.ConfigDict(
      {
          'name': 'image_folder',
          'config': '',
          'data_dir': kwargs.pop('data_dir'),
          'builder_kwargs': kwargs,
      }
  )


def test_read_back_through_the_pipeline_without_tensorflow(built, folder):
  cfg = _dataset_cfg(
      data_dir=os.path.dirname(os.path.dirname(os.path.dirname(built.data_dir))),
      csv=folder[0],
      attributes=['smiling'],
  )  # a list, as a restored config has
  builder = pipeline.get_builder(cfg)
  assert builder.data_dir == built.data_dir
  split = pipeline.load_split(builder, 'attacker_test')
  assert set(split.labels) == {'identity', 'gender', 'smiling'}
  assert split.image_shape == (64, 64, 3) and split.source[0]['image'].shape == (64, 64, 3)
  assert 'tensorflow' not in sys.modules


@pytest.mark.parametrize(
    'header, body, attributes, match',
    [
        (
            'path,name,gender',
            'a.jpg,x,male',
            (),
            r"no 'identity' column.*columns found: path, name, gender",
        ),
        ('file,identity,gender', 'a.jpg,x,male', (), r"no 'path' column.*columns found: file"),
        (
            'path,identity,gender',
            'a.jpg,x,male\nb.jpg,y,male',
            (),
            r"'gender' .* single class \('male'\)",
        ),
        (
            'path,identity,gender,smiling',
            'a.jpg,x,male,1\nb.jpg,y,female,1',
            ('smiling',),
            r"'smiling' .* single class",
        ),
        (
            'path,identity,gender',
            'a.jpg,x,male\nb.jpg,y,female',
            ('smiling',),
            r"no column 'smiling'.*columns found: path, identity, gender",
        ),
    ],
)
def test_bad_csv_is_a_one_line_error(tmp_path, header, body, attributes, match):
  path = tmp_path / 'faces.csv'
  path.write_text(f'{header}\n{body}\n')
  with pytest.raises(errors.DataError, match=match) as e:
    imf.ImageFolder(data_dir=str(tmp_path), csv=str(path), attributes=attributes)
  # Through the pipeline, without TFDS's "Failed to construct" context.
  with pytest.raises(errors.DataError) as e2:
    pipeline.get_builder(
        _dataset_cfg(data_dir=str(tmp_path), csv=str(path), attributes=list(attributes))
    )
  assert str(e2.value) == str(e.value) and '\n' not in str(e.value)


def test_missing_csv_and_no_csv_are_clear_errors(tmp_path):
  with pytest.raises(errors.DataError, match='does not exist'):
    imf.ImageFolder(data_dir=str(tmp_path), csv=str(tmp_path / 'nope.csv'))
  with pytest.raises(errors.DataError, match='builder_kwargs.csv'):
    pipeline.get_builder(_dataset_cfg(data_dir=str(tmp_path), csv=''))


# ---------------------------------------------------------------------------
# splits: the shared mechanism.
# ---------------------------------------------------------------------------


def test_groups_respect_min_images_and_fractions():
  rng = np.random.default_rng(0)
  strata = rng.integers(0, 2, 60)
  counts = rng.integers(1, 9, 60)
  groups = splits.identity_groups(
      strata, np.random.default_rng(1), counts=counts, min_images_per_identity=4
  )
  assert sorted(sum(groups.values(), [])) == list(range(60))
  assert len(groups['attacker']) == 30 and all(counts[i] >= 4 for i in groups['attacker'])
  assert len(groups['owner_test']) == 8  # round(0.25 * 30)
  # Fewer eligible identities than the attacker's share: all eligible ones, owner gets the rest.
  counts[:50] = 1
  few = splits.identity_groups(
      strata, np.random.default_rng(1), counts=counts, min_images_per_identity=4
  )
  assert few['attacker'] == [i for i in range(50, 60) if counts[i] >= 4]
  with pytest.raises(ValueError, match='no identity has >= 9 images'):
    splits.identity_groups(
        strata, np.random.default_rng(1), counts=counts, min_images_per_identity=9
    )


def test_split_rows_halve_every_attacker_identity():
  identity = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 2, 3, 3, 2])
  groups = {'owner_train': [3], 'owner_test': [1], 'attacker': [0, 2]}
  rows = splits.split_rows(identity, groups, np.random.default_rng(0))
  assert rows['train'].tolist() == [11, 12] and rows['test'].tolist() == [1, 4, 7]
  for i, n in ((0, 4), (2, 5)):
    tr = [r for r in rows['attacker_train'] if identity[r] == i]
    te = [r for r in rows['attacker_test'] if identity[r] == i]
    assert len(tr) == n - n // 2 and len(te) == n // 2
  assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(len(identity)))


def test_synthetic_faces_uses_the_shared_mechanism_unchanged():
  # Recorded from synthetic_faces before the split logic moved to privjax.data.splits.
  idx = sf.split_indices(6, 4, 9)
  assert sf.identity_groups(6, 9) == {
      'owner_train': [0, 1],
      'owner_test': [3],
      'attacker': [2, 4, 5],
  }
  assert idx['train'].tolist() == list(range(8)) and idx['test'].tolist() == [12, 13, 14, 15]
  assert idx['attacker_train'].tolist() == [8, 11, 16, 17, 21, 23]
  assert idx['attacker_test'].tolist() == [9, 10, 18, 19, 20, 22]


# ---------------------------------------------------------------------------
# Training on your own photos.
# ---------------------------------------------------------------------------


def _config_module():
  module = config_lib.config_module(os.path.join(ROOT, 'configs', 'image_folder.py'))
  return module


def test_config_arguments():
  get_config = _config_module().get_config
  c = get_config('siamese,csv=/x/faces.csv,attributes=smiling+glasses')
  assert c.defence.name == 'siamese' and c.dataset.name == 'image_folder'
  assert c.dataset.builder_kwargs.csv == '/x/faces.csv'
  assert c.dataset.builder_kwargs.attributes == ('smiling', 'glasses')
  c.dataset.primary = 'smiling'
  c.model.image_size = 224
  d = c.to_dict()['dataset']['builder_kwargs']
  assert d['primary'] == 'smiling' and d['image_size'] == 224  # follow the training config
  with pytest.raises(ValueError, match='unknown config argument'):
    get_config('cvs=/x.csv')


def test_train_four_steps_on_your_own_photos(built, folder, tmp_path):
  from privjax.train import loop

  c = _config_module().get_config(f'none,tiny,csv={folder[0]},attributes=smiling')
  c.dataset.data_dir = os.path.dirname(os.path.dirname(os.path.dirname(built.data_dir)))
  c.total_steps = 4
  c.eval_every = c.checkpoint_every = 4
  result = loop.train_and_evaluate(c, str(tmp_path / 'run'))
  assert result['step'] == 4 and 0.0 <= result['test_accuracy'] <= 1.0
  assert os.path.exists(tmp_path / 'run' / 'metrics.jsonl')


# ---------------------------------------------------------------------------
# The same photo under other names, files that are not photos, the content digest.
# ---------------------------------------------------------------------------


def _prepared_images(builder):
  """{split: uint8 [N, S, S, 3]} of a prepared data set."""
  return {s: np.stack([e['image'] for e in _read(builder, s)]) for s in splits.SPLITS}


def test_the_same_photo_under_other_names_is_kept_once(tmp_path, caplog):
  csv_path, rows = _write_folder(str(tmp_path))
  folder = os.path.dirname(csv_path)
  photo, other = rows[0], rows[3]  # a PNG of p0; a JPEG of p0 or p1, listed again under 'p7'
  src = os.path.join(folder, photo[0])
  os.symlink(src, os.path.join(folder, 'img', 'link.png'))
  shutil.copyfile(src, os.path.join(folder, 'img', 'copy.png'))
  Image.open(src).convert('RGB').save(os.path.join(folder, 'img', 'q90.jpg'), quality=90)
  extra = [['img/link.png', *photo[1:]], ['img/copy.png', *photo[1:]], ['img/q90.jpg', *photo[1:]]]
  extra.append([other[0], 'p7', *other[2:]])  # the same file under another identity
  with open(csv_path, 'a', newline='') as f:
    csv.writer(f).writerows(extra)
  with caplog.at_level(logging.WARNING):
    builder = imf.build(data_dir=str(tmp_path / 'tfds'), csv=csv_path)
  # The original is kept; its symlink and copy (same pixels) and JPEG (near) are dropped; the
  # photo listed under two identities is dropped in both copies.
  dups = builder.info.metadata['duplicates']
  assert (dups['count'], dups['same_pixels'], dups['near_identical'], dups['conflicting']) == (
      5,
      2,
      1,
      2,
  )
  assert 'dropped 5 duplicate images (2 with the same pixels as a kept one, 1 near-identical, ' in (
      caplog.text
  )
  assert any(d.endswith(f'q90.jpg: near-identical to {src}') for d in dups['first'])
  assert any(d.startswith(os.path.join(folder, other[0])) for d in dups['first'])
  images = _prepared_images(builder)
  total = sum(len(v) for v in images.values())
  assert total == len(rows) - SKIPPED - 1  # one photo less: the one listed as two people
  # No image in two splits, by pixels or near-identical thumbnails of what was prepared.
  thumbs = [
      np.asarray(Image.fromarray(im).convert('L').resize((16, 16), Image.Resampling.BOX)).ravel()
      for s in splits.SPLITS
      for im in images[s]
  ]
  assert photo_builder.near_pairs(np.stack(thumbs)) == []
  want = np.asarray(photo_builder.load_face(src, 64, 1.0))
  assert sum(np.array_equal(im, want) for s in images for im in images[s]) == 1


def test_files_that_are_not_regular_are_skipped_unopened(tmp_path, caplog):
  csv_path, rows = _write_folder(str(tmp_path))
  folder = os.path.dirname(csv_path)
  fifo = os.path.join(folder, 'img', 'fifo.jpg')
  os.mkfifo(fifo)
  os.mkdir(os.path.join(folder, 'img', 'folder.jpg'))
  os.symlink('/dev/zero', os.path.join(folder, 'img', 'zero.jpg'))
  with open(csv_path, 'a', newline='') as f:
    csv.writer(f).writerows(
        [[f'img/{n}.jpg', 'p0', 'female', 0, ''] for n in ('fifo', 'folder', 'zero')]
    )

  # Opening the FIFO for reading would wait for a writer: if the builder does, this writer ends
  # the wait after a minute, and the test fails instead of hanging.
  done = threading.Event()

  def unblock():
    if not done.wait(60):
      with open(fifo, 'wb'):
        pass

  watchdog = threading.Thread(target=unblock, daemon=True)
  watchdog.start()
  try:
    with caplog.at_level(logging.WARNING):
      builder = imf.build(data_dir=str(tmp_path / 'tfds'), csv=csv_path)
  finally:
    done.set()
  skipped = builder.info.metadata['skipped']
  assert skipped['count'] == SKIPPED + 3
  for name, kind in (('fifo', 'a FIFO'), ('folder', 'a directory'), ('zero', 'a character device')):
    assert f'{name}.jpg: not a regular file ({kind})' in ' '.join(skipped['first'])
  assert f'skipped {SKIPPED + 3} of {len(rows) + 3} images' in caplog.text


def test_near_pairs_are_every_pair_within_the_distance(monkeypatch):
  rng = np.random.default_rng(0)
  base = rng.integers(0, 256, (60, 256))
  noise = rng.integers(-6, 7, (60, 256))
  # Planted copies at known distances, and rows of one mean (the band search's worst case).
  thumbs = np.concatenate(
      [base, np.clip(base[:20] + noise[:20] // 3, 0, 255), np.full((5, 256), 9)]
  )
  thumbs[-1, :128] += 1
  monkeypatch.setattr(photo_builder, '_NEAR_CHUNK', 7)  # many blocks, pairs across them
  for max_rms in (0.5, 2.0, 4.0, 40.0):
    d = np.sqrt(((thumbs[:, None, :] - thumbs[None]) ** 2).mean(-1))
    want = [(i, j) for i in range(len(d)) for j in range(i + 1, len(d)) if d[i, j] <= max_rms]
    assert photo_builder.near_pairs(thumbs.astype(np.uint8), max_rms) == want, max_rms


def test_the_content_digest_follows_the_data_not_its_folder(built, folder, tmp_path):
  digest = built.info.metadata['digest']
  assert len(digest) == 20
  # The same photos and CSV in another folder: the same data set, the same digest.
  moved = str(tmp_path / 'moved')
  shutil.copytree(os.path.dirname(folder[0]), moved, symlinks=True)
  again = imf.build(
      data_dir=str(tmp_path / 'a'), csv=os.path.join(moved, 'faces.csv'), attributes=('smiling',)
  )
  assert again.info.metadata['digest'] == digest
  # One label changed: another data set.
  with open(os.path.join(moved, 'faces.csv')) as f:
    text = f.read()
  line = text.splitlines()[1]
  flipped = (
      line.replace(',female,', ',male,')
      if ',female,' in line
      else line.replace(',male,', ',female,')
  )
  with open(os.path.join(moved, 'faces.csv'), 'w') as f:
    f.write(text.replace(line, flipped, 1))
  edited = imf.build(
      data_dir=str(tmp_path / 'b'), csv=os.path.join(moved, 'faces.csv'), attributes=('smiling',)
  )
  assert edited.info.metadata['digest'] != digest
