"""celeba_faces on fake files in the official CelebA formats (no download, no TensorFlow)."""

import os
import shutil
import sys
import zipfile

import ml_collections
import numpy as np
import pytest
from PIL import Image

from privjax import config as config_lib
from privjax import errors
from privjax.data import celeba, face_renderer, pipeline, splits

pytestmark = pytest.mark.unit

# The 40 attribute names of list_attr_celeba.txt, in the official order.
ATTRS = (
    '5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose '
    'Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses '
    'Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache '
    'Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks '
    'Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick '
    'Wearing_Necklace Wearing_Necktie Young'
).split()
NUM_IDS, PER_ID = 12, 5
FILES = (celeba.ATTR_FILE, celeba.IDENTITY_FILE, celeba.PARTITION_FILE)


def write_celeba(root, absent=()):
  """Aligned 178x218 JPEGs with identities scattered in file order, as in the real release."""
  data = face_renderer.generate_faces(NUM_IDS, PER_ID, 64, 1)
  rng = np.random.default_rng(0)
  order = rng.permutation(NUM_IDS * PER_ID)  # file k shows synthetic image order[k]
  os.makedirs(os.path.join(root, celeba.IMAGE_DIR), exist_ok=True)
  attr, ident, part = [], [], []
  for k, i in enumerate(order):
    name = f'{k + 1:06d}.jpg'
    if name not in absent:
      Image.fromarray(data['image'][i]).resize((178, 218)).save(
          os.path.join(root, celeba.IMAGE_DIR, name), quality=90
      )
    values = rng.choice([-1, 1], len(ATTRS))
    values[ATTRS.index('Male')] = 1 if data['gender'][i] else -1
    values[ATTRS.index('Smiling')] = 1 if data['smiling'][i] else -1
    attr.append(name + ' ' + ' '.join(f'{v:2d}' for v in values))
    ident.append(f'{name} {100 + 7 * int(data["identity"][i])}')  # ids are not 0..N-1
    part.append(f'{name} {k * 3 // len(order)}')
  with open(os.path.join(root, celeba.ATTR_FILE), 'w') as f:
    f.write(f'{len(order)}\n' + ' '.join(ATTRS) + ' \n' + '\n'.join(attr) + '\n')
  with open(os.path.join(root, celeba.IDENTITY_FILE), 'w') as f:
    f.write('\n'.join(ident) + '\n')
  with open(os.path.join(root, celeba.PARTITION_FILE), 'w') as f:
    f.write('\n'.join(part) + '\n')
  return data, order


@pytest.fixture(scope='module')
def fake(tmp_path_factory):
  manual = str(tmp_path_factory.mktemp('celeba_manual'))
  data, order = write_celeba(manual, absent={'000007.jpg'})
  data_dir = str(tmp_path_factory.mktemp('tfds_celeba'))
  cfg = ml_collections.ConfigDict(
      {
          'name': 'celeba_faces',
          'config': '',
          'data_dir': data_dir,
          'manual_dir': manual,
          'builder_kwargs': {'image_size': 32, 'crop_fraction': 0.9, 'seed': 0},
      }
  )
  return pipeline.get_builder(cfg), data, order, manual


def test_builds_from_manual_dir_with_identity_splits(fake):
  builder, data, order, _ = fake
  assert builder.builder_config.name == 's32_crop0p9'
  features = builder.info.features
  assert features['gender'].names == ['female', 'male']
  assert features['smiling'].names == ['no', 'yes']
  assert features['eval_partition'].names == ['train', 'valid', 'test']
  assert features['identity'].names == [str(100 + 7 * i) for i in range(NUM_IDS)]  # numeric order
  groups = builder.info.metadata['splits']
  assert sorted(sum(groups.values(), [])) == list(range(NUM_IDS))
  labels = {s: pipeline.load_split(builder, s).labels for s in splits.SPLITS}
  assert set(labels['train']['identity']) == set(groups['owner_train'])
  assert set(labels['test']['identity']) == set(groups['owner_test'])
  att_tr, att_te = labels['attacker_train']['identity'], labels['attacker_test']['identity']
  assert set(att_tr) == set(att_te) == set(groups['attacker'])
  for i in groups['attacker']:  # 5 images halved (one identity lost file 7)
    assert (att_tr == i).sum() + (att_te == i).sum() in (4, 5) and (att_te == i).sum() >= 2
  assert sum(len(v['identity']) for v in labels.values()) == NUM_IDS * PER_ID - 1
  assert builder.info.metadata['skipped']['count'] == 1
  assert '000007.jpg: missing' in builder.info.metadata['skipped']['first'][0]
  assert 'tensorflow' not in sys.modules


def test_labels_match_the_official_files(fake):
  builder, data, order, _ = fake
  # Rows keep file order: train's rows are the owner_train files in increasing file number.
  names = builder.info.features['identity'].names
  owner = {names[i] for i in builder.info.metadata['splits']['owner_train']}
  files = [
      k for k, i in enumerate(order) if str(100 + 7 * int(data['identity'][i])) in owner and k != 6
  ]
  split = pipeline.load_split(builder, 'train')
  np.testing.assert_array_equal(split.labels['gender'], data['gender'][order[files]])
  np.testing.assert_array_equal(split.labels['smiling'], data['smiling'][order[files]])
  np.testing.assert_array_equal(
      split.labels['eval_partition'], [k * 3 // len(order) for k in files]
  )
  assert split.image_shape == (32, 32, 3) and split.source[0]['image'].shape == (32, 32, 3)


@pytest.mark.parametrize('missing', FILES)
def test_missing_file_names_the_file_and_where_to_get_it(tmp_path, missing):
  for f in FILES:
    if f != missing:
      (tmp_path / f).write_text('1\n' + ' '.join(ATTRS) + '\n')
  (tmp_path / celeba.IMAGE_DIR).mkdir()
  builder = celeba.CelebaFaces(data_dir=str(tmp_path / 'tfds'), image_size=16)
  with pytest.raises(errors.DataError) as e:
    builder.download_and_prepare(download_config=_download(tmp_path))
  assert str(e.value) == (
      f'CelebA needs {missing} in {tmp_path}; download it from the official '
      'CelebA page (Google Drive) and place it there'
  )


def _download(manual):
  import tensorflow_datasets as tfds

  return tfds.download.DownloadConfig(
      manual_dir=str(manual) if manual else None, try_download_gcs=False
  )


def test_missing_images_and_missing_manual_dir(tmp_path):
  for f in FILES:
    (tmp_path / f).write_text('x\n')
  builder = celeba.CelebaFaces(data_dir=str(tmp_path / 'tfds'), image_size=16)
  with pytest.raises(errors.DataError, match=f'CelebA needs img_align_celeba/ .* in {tmp_path}'):
    builder.download_and_prepare(download_config=_download(tmp_path))
  with pytest.raises(errors.DataError, match='set --config.dataset.manual_dir'):
    builder.download_and_prepare(download_config=_download(tmp_path / 'empty'))


def test_images_from_the_official_zip(tmp_path):
  manual = tmp_path / 'manual'
  write_celeba(str(manual))
  with zipfile.ZipFile(manual / celeba.IMAGE_ZIP, 'w') as z:
    for f in sorted(os.listdir(manual / celeba.IMAGE_DIR)):
      z.write(manual / celeba.IMAGE_DIR / f, f'{celeba.IMAGE_DIR}/{f}')
  shutil.rmtree(manual / celeba.IMAGE_DIR)
  builder = celeba.CelebaFaces(data_dir=str(tmp_path / 'tfds'), image_size=16)
  builder.download_and_prepare(download_config=_download(manual))
  assert sum(builder.info.splits[s].num_examples for s in splits.SPLITS) == NUM_IDS * PER_ID
  assert builder.info.metadata['skipped']['count'] == 0


def test_config_names_parse_back():
  cfg = celeba.CelebaFaces.get_builder_config('s224_crop0p8_seed3')
  assert (cfg.image_size, cfg.crop_fraction, cfg.seed) == (224, 0.8, 3)
  assert celeba.CelebaFaces.get_builder_config('s64') is celeba.CelebaFaces.BUILDER_CONFIGS[0]
  assert celeba.CelebaFaces.get_builder_config('s64_crop0p9_seedx') is None
  assert celeba.CelebaFaces.get_builder_config('nonsense') is None


def test_celeba_mini_config_trains_vgg_mini_at_64_on_the_default_config(tmp_path):
  module = config_lib.config_module(
      os.path.join(os.path.dirname(__file__), '..', 'configs', 'celeba_mini.py')
  )
  c = module.get_config('siamese')
  config_lib.validate(c)
  assert (c.defence.name, c.model.arch, c.model.image_size) == ('siamese', 'vgg_mini', 64)
  assert not c.input.resize  # stored at the model's size
  assert c.dataset.name == 'celeba_faces' and c.dataset.manual_dir == ''
  builder = celeba.CelebaFaces(data_dir=str(tmp_path), **c.dataset.builder_kwargs.to_dict())
  assert builder.builder_config is celeba.CelebaFaces.BUILDER_CONFIGS[0]  # 's64'
