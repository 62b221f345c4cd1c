"""lfw_faces on a fake LFW tree and label files in the published formats (never downloads)."""

import os
import sys
import tarfile

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from privjax import config as config_lib
from privjax.data import face_renderer, lfw, pipeline, splits

# Person -> number of images; LFW is dominated by people with a single image.
PEOPLE = {
    'Aaron_Eckhart': 1,
    'Abel_Pacheco': 4,
    'Ana_Guevara': 5,
    'Bill_Gates': 6,
    'Carla_Del_Ponte': 4,
    'Colin_Powell': 7,
    'Dita_Von_Teese': 1,
    'Gloria_Macapagal_Arroyo': 5,
    'Hugo_Chavez': 2,
    'Jennifer_Lopez': 4,
    'Laura_Bush': 6,
    'Tony_Blair': 5,
    'Venus_Williams': 4,
    'Unlabelled_Person': 3,
}
FEMALE = {
    'Ana_Guevara',
    'Carla_Del_Ponte',
    'Dita_Von_Teese',
    'Gloria_Macapagal_Arroyo',
    'Jennifer_Lopez',
    'Laura_Bush',
    'Venus_Williams',
}
ATTR_COLUMNS = ['person', 'imagenum', 'Male', 'Asian', 'White', 'Black', 'Baby', 'Child']


def write_lfw(root, folder='lfw'):
  data = face_renderer.generate_faces(len(PEOPLE), max(PEOPLE.values()), 50, 2)
  for p, (person, n) in enumerate(PEOPLE.items()):
    os.makedirs(os.path.join(root, folder, person))
    for k in range(n):
      Image.fromarray(data['image'][p * 7 + k]).resize((250, 250)).save(
          os.path.join(root, folder, person, f'{person}_{k + 1:04d}.jpg')
      )
  rng = np.random.default_rng(0)
  lines = [f'# {sum(PEOPLE.values())} lines', '#\t' + '\t'.join(ATTR_COLUMNS)]
  male_names, female_names = [], []
  for person, n in PEOPLE.items():
    if person == 'Unlabelled_Person':
      continue
    for k in range(1, n + 1):
      sign = -1.0 if person in FEMALE else 1.0
      # One image of Bill_Gates is misjudged: the per-person mean still says male.
      score = -0.3 if (person, k) == ('Bill_Gates', 2) else sign * rng.uniform(0.2, 2.0)
      others = '\t'.join(f'{v:.6f}' for v in rng.normal(size=len(ATTR_COLUMNS) - 3))
      lines.append(f'{person.replace("_", " ")}\t{k}\t{score:.6f}\t{others}')
      (female_names if person in FEMALE else male_names).append(f'{person}_{k:04d}.jpg')
  with open(os.path.join(root, lfw.ATTRIBUTES_FILE), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(root, 'male_names.txt'), 'w') as f:
    f.write('\n'.join(male_names) + '\n')
  with open(os.path.join(root, 'female_names.txt'), 'w') as f:
    f.write('\n'.join(female_names) + '\n')


@pytest.fixture(scope='module')
def manual(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('lfw_manual'))
  write_lfw(root)
  return root


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise OSError('network is unreachable (test)')

  monkeypatch.setattr(tfds.download.DownloadManager, 'download', refuse)


def _cfg(data_dir, manual_dir, **kwargs):
  return ml_collections.ConfigDict(
      {
          'name': 'lfw_faces',
          'config': '',
          'data_dir': data_dir,
          'manual_dir': manual_dir,
          'builder_kwargs': {'image_size': 32, **kwargs},
      }
  )


def _check_protocol(builder):
  names = builder.info.features['identity'].names
  assert names == sorted(p for p in PEOPLE if p != 'Unlabelled_Person')
  groups = builder.info.metadata['splits']
  assert sorted(sum(groups.values(), [])) == list(range(len(names)))
  labels = {s: pipeline.load_split(builder, s).labels for s in splits.SPLITS}
  assert (
      set(labels['attacker_train']['identity'])
      == set(labels['attacker_test']['identity'])
      == (set(groups['attacker']))
  )
  for i in groups['attacker']:
    assert PEOPLE[names[i]] >= 4
  for s in ('train', 'test'):
    assert set(labels[s]['identity']) == set(groups['owner_' + s])
  for s, v in labels.items():
    for i, g in zip(v['identity'], v['gender']):
      assert g == (names[i] not in FEMALE), (s, names[i])
  assert builder.info.metadata['skipped']['count'] == 3  # the unlabelled person's images
  return labels


def test_from_manual_dir_with_kumar_attributes(manual, tmp_path):
  builder = pipeline.get_builder(_cfg(str(tmp_path), manual))
  assert builder.builder_config.name == 's32'
  labels = _check_protocol(builder)
  assert sum(len(v['identity']) for v in labels.values()) == sum(PEOPLE.values()) - 3
  assert builder.info.metadata['source']['gender_source'] == 'attributes'
  assert builder.info.metadata['source']['images'] == os.path.join(manual, 'lfw')
  assert pipeline.load_split(builder, 'test').source[0]['image'].shape == (32, 32, 3)
  assert 'tensorflow' not in sys.modules


def test_from_manual_archive_with_name_lists(tmp_path):
  root = tmp_path / 'manual'
  write_lfw(str(root / 'src'))
  with tarfile.open(root / 'lfw.tgz', 'w:gz') as tar:
    tar.add(root / 'src' / 'lfw', arcname='lfw')
  for f in ('male_names.txt', 'female_names.txt'):
    os.rename(root / 'src' / f, root / f)
  builder = pipeline.get_builder(_cfg(str(tmp_path / 'tfds'), str(root), gender_source='names'))
  assert builder.builder_config.name == 's32_gnames'
  _check_protocol(builder)
  assert builder.info.metadata['source']['images'] == str(root / 'lfw.tgz')


def test_failed_download_says_which_files_to_put_where(tmp_path):
  with pytest.raises(pipeline.DataError) as e:
    pipeline.get_builder(_cfg(str(tmp_path), ''))
  msg = str(e.value)
  assert msg.startswith(f'could not download {lfw.URLS["original"]} (network is unreachable')
  assert 'lfw.tgz or its extracted lfw/ folder' in msg and '--config.dataset.manual_dir' in msg
  # Images present, attributes file absent: the error names that file and the manual_dir.
  write_lfw(str(tmp_path / 'm'))
  os.remove(tmp_path / 'm' / lfw.ATTRIBUTES_FILE)
  with pytest.raises(
      pipeline.DataError,
      match=f'{lfw.URLS["attributes"]}.*put lfw_attributes.txt '
      f'in a manual_dir \\({tmp_path / "m"}\\)',
  ):
    pipeline.get_builder(_cfg(str(tmp_path), str(tmp_path / 'm')))
  os.remove(tmp_path / 'm' / 'female_names.txt')
  with pytest.raises(
      pipeline.DataError,
      match='needs male_names.txt and female_names.txt.*missing: female_names.txt',
  ):
    pipeline.get_builder(_cfg(str(tmp_path), str(tmp_path / 'm'), gender_source='names'))


def test_bad_parameters_are_one_line_errors(tmp_path):
  with pytest.raises(pipeline.DataError, match='variant=.*original, deepfunneled'):
    pipeline.get_builder(_cfg(str(tmp_path), '', variant='funneled'))
  with pytest.raises(pipeline.DataError, match='min_images_per_identity must be >= 2'):
    pipeline.get_builder(_cfg(str(tmp_path), '', min_images_per_identity=1))
  with pytest.raises(
      pipeline.DataError, match='lfw_faces has no parameter crop; valid: crop_fraction'
  ):
    pipeline.get_builder(_cfg(str(tmp_path), '', crop=0.5))


def test_parsers_read_the_published_formats(manual):
  scores = lfw.read_attribute_scores(os.path.join(manual, lfw.ATTRIBUTES_FILE))
  assert scores['Bill_Gates_0002.jpg'] == pytest.approx(-0.3)
  assert scores['Aaron_Eckhart_0001.jpg'] > 0
  assert 'Unlabelled_Person_0001.jpg' not in scores
  lists = lfw.read_name_lists({f: lfw.epath.Path(manual) / f for f in lfw.NAMES_FILES})
  assert lists['Laura_Bush_0006.jpg'] == -1.0 and lists['Tony_Blair_0001.jpg'] == 1.0
  assert lfw.LfwFaces.get_builder_config('s64_vdeepfunneled_gnames').variant == 'deepfunneled'


def test_lfw_mini_config_trains_vgg_mini_at_64_on_the_default_config(tmp_path):
  module = config_lib.config_module(
      os.path.join(os.path.dirname(__file__), '..', 'configs', 'lfw_mini.py')
  )
  c = module.get_config('siamese')
  config_lib.validate(c)
  assert (c.defence.name, c.model.arch, c.model.image_size) == ('siamese', 'vgg_mini', 64)
  assert not c.input.resize  # stored at the model's size
  assert c.dataset.name == 'lfw_faces' and c.dataset.manual_dir == ''
  builder = lfw.LfwFaces(data_dir=str(tmp_path), **c.dataset.builder_kwargs.to_dict())
  assert builder.builder_config is lfw.LfwFaces.BUILDER_CONFIGS[0]  # 's64'
