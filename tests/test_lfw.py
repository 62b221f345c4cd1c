"""lfw_faces on a fake LFW tree and label files in the published formats (never downloads)."""

import contextlib
import hashlib
import os
import sys
import tarfile
import types

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image
from tensorflow_datasets.core.download import checksums, downloader

from privjax import config as config_lib
from privjax import errors
from privjax.data import face_renderer, lfw, pipeline, splits

pytestmark = pytest.mark.unit

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
def served(monkeypatch):
  """{url: (file name, bytes)} that a "download" returns; any other url is unreachable.

  Replaces only TFDS's HTTP request: its DownloadManager still hashes what arrives and checks it
  against the builder's checksums.tsv.
  """
  files = {}

  @contextlib.contextmanager
  def open_url(url, **kwargs):
    del kwargs
    if url not in files:
      raise OSError('network is unreachable (test)')
    name, data = files[url]
    response = types.SimpleNamespace(
        url=url, headers={'content-disposition': f'attachment; filename={name}'}
    )
    yield response, [data[i : i + 4096] for i in range(0, len(data), 4096)]

  monkeypatch.setattr(downloader, '_open_url', open_url)
  return files


@pytest.fixture(scope='module')
def archive(manual, tmp_path_factory):
  """lfw.tgz of the fake tree: (bytes, sha256)."""
  path = tmp_path_factory.mktemp('lfw_archive') / 'lfw.tgz'
  with tarfile.open(path, 'w:gz') as tar:
    tar.add(os.path.join(manual, 'lfw'), arcname='lfw')
  return path.read_bytes(), checksums.compute_url_info(path).checksum


def _prepared(data_dir):
  """The data sets prepared under `data_dir` (an error must leave none)."""
  return sorted(str(p) for p in epath.Path(data_dir).glob('lfw_faces/*/*/dataset_info.json'))


def _one_line_error(cfg) -> str:
  with pytest.raises(errors.DataError) as e:
    pipeline.get_builder(cfg)
  msg = str(e.value)
  assert '\n' not in msg, msg
  assert not _prepared(cfg.data_dir)
  return msg


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
  for info in (builder.info, pipeline.get_builder(_cfg(str(tmp_path), manual)).info):
    assert info.homepage == lfw.HOMEPAGE == 'http://vis-www.cs.umass.edu/lfw/'
    assert 'Labeled Faces in the Wild' in info.citation and 'Kumar' in info.citation
  written = (epath.Path(builder.data_dir) / 'dataset_info.json').read_text()
  assert 'vis-www.cs.umass.edu/lfw' in written and 'LFWTech' in written


def test_from_manual_archive_with_name_lists(tmp_path, caplog):
  root = tmp_path / 'manual'
  write_lfw(str(root / 'src'))
  with tarfile.open(root / 'lfw.tgz', 'w:gz') as tar:
    tar.add(root / 'src' / 'lfw', arcname='lfw')
  for f in ('male_names.txt', 'female_names.txt'):
    os.rename(root / 'src' / f, root / f)
  builder = pipeline.get_builder(_cfg(str(tmp_path / 'tfds'), str(root), gender_source='names'))
  assert builder.builder_config.name == 's32_gnames'
  _check_protocol(builder)
  source = builder.info.metadata['source']
  assert source['images'] == str(root / 'lfw.tgz')
  assert source['lfw.tgz_sha256'] == checksums.compute_url_info(root / 'lfw.tgz').checksum
  assert (
      source['male_names.txt_sha256']
      == checksums.compute_url_info(root / 'male_names.txt').checksum
  )
  # Not the published archive: used as given, said once.
  assert 'differs from the published lfw.tgz' in caplog.text


def test_failed_download_says_which_files_to_put_where(tmp_path):
  with pytest.raises(errors.DataError) as e:
    pipeline.get_builder(_cfg(str(tmp_path), ''))
  msg = str(e.value)
  assert msg.startswith(f'could not download {lfw.URLS["original"]} (network is unreachable')
  assert 'lfw.tgz or its extracted lfw/ folder' in msg and '--config.dataset.manual_dir' in msg
  # Images present, attributes file absent: the error names that file and the manual_dir.
  write_lfw(str(tmp_path / 'm'))
  os.remove(tmp_path / 'm' / lfw.ATTRIBUTES_FILE)
  with pytest.raises(
      errors.DataError,
      match=f'{lfw.URLS["attributes"]}.*put lfw_attributes.txt '
      f'in a manual_dir \\({tmp_path / "m"}\\)',
  ):
    pipeline.get_builder(_cfg(str(tmp_path), str(tmp_path / 'm')))
  os.remove(tmp_path / 'm' / 'female_names.txt')
  with pytest.raises(
      errors.DataError,
      match='needs male_names.txt and female_names.txt.*missing: female_names.txt',
  ):
    pipeline.get_builder(_cfg(str(tmp_path), str(tmp_path / 'm'), gender_source='names'))


def test_bad_parameters_are_one_line_errors(tmp_path):
  with pytest.raises(errors.DataError, match='variant=.*original, deepfunneled'):
    pipeline.get_builder(_cfg(str(tmp_path), '', variant='funneled'))
  with pytest.raises(errors.DataError, match='min_images_per_identity must be >= 2'):
    pipeline.get_builder(_cfg(str(tmp_path), '', min_images_per_identity=1))
  with pytest.raises(
      errors.DataError, match='lfw_faces has no parameter crop; valid: crop_fraction'
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


def test_checksums_file_pins_the_archive_as_tfds_does():
  ours = lfw.LfwFaces.url_infos  # read by TFDS from the checksums.tsv next to lfw.py
  theirs = checksums.load_url_infos(tfds.core.utils.tfds_path() / 'datasets/lfw/checksums.tsv')
  url = lfw.URLS['original']
  assert ours[url] == theirs[url]  # TFDS's own lfw builder: same mirror, size and SHA-256
  assert (int(ours[url].size), ours[url].checksum[:12]) == (180566744, '055f7d9c632d')
  assert ours[url].filename == 'lfw.tgz'
  assert set(ours) == {url}  # the other files have no published checksum


def test_download_is_checked_against_the_published_checksum(
    manual, archive, served, tmp_path, monkeypatch
):
  data, sha256 = archive
  url, labels_url = lfw.URLS['original'], lfw.URLS['attributes']
  labels = (epath.Path(manual) / lfw.ATTRIBUTES_FILE).read_bytes()
  served[url] = ('lfw.tgz', data)
  served[labels_url] = (lfw.ATTRIBUTES_FILE, labels)
  # The fake archive is not the published one: refused, in one line, before anything is prepared.
  msg = _one_line_error(_cfg(str(tmp_path / 'published'), ''))
  assert msg.startswith(
      f'{url} does not match its published checksum (expected 172.20 MiB, sha256 '
      f'055f7d9c632d7370...; got '
  )
  assert f'sha256 {sha256[:16]}...)' in msg and '--config.dataset.manual_dir' in msg
  # Registered with its own size and SHA-256, the same download is accepted.
  monkeypatch.setattr(
      lfw.LfwFaces,
      'url_infos',
      {url: checksums.UrlInfo(size=len(data), checksum=sha256, filename='lfw.tgz')},
  )
  builder = pipeline.get_builder(_cfg(str(tmp_path / 'registered'), ''))
  _check_protocol(builder)
  source = builder.info.metadata['source']
  assert (source['images'], source['lfw.tgz_sha256'], source['labels']) == (url, sha256, labels_url)
  assert source['lfw_attributes.txt_sha256'] == hashlib.sha256(labels).hexdigest()


ATTR_HEADER = '#\t' + '\t'.join(ATTR_COLUMNS)
ZEROS = '\t'.join(['0.5'] * (len(ATTR_COLUMNS) - 3))
# Malformed lfw_attributes.txt -> what the one-line error says after "<file> ...".
BAD_ATTRIBUTES = {
    'an error page': (
        '<html><body>404 Not Found</body></html>',
        'is not in the published format: no "# person<TAB>imagenum<TAB>Male<TAB>..." header line '
        'before line 1',
    ),
    'a header without Male': (
        '#\tperson\timagenum\tAsian\nAaron Eckhart\t1\t0.5',
        'is not in the published format: no "# person<TAB>imagenum<TAB>Male<TAB>..." header line '
        'before line 2',
    ),
    'a row short of columns': (
        f'{ATTR_HEADER}\nAaron Eckhart\t1\t0.5\t{ZEROS}\nAbel Pacheco\t1\t0.5',
        'is not in the published format: line 3 has 3 tab-separated fields, the header 8',
    ),
    'space-separated rows': (
        f'{ATTR_HEADER}\nAaron Eckhart 1 0.5 {ZEROS.replace(chr(9), " ")}',
        'is not in the published format: line 2 has 1 tab-separated fields, the header 8',
    ),
    'text in a number column': (
        f'{ATTR_HEADER}\nAaron Eckhart\t1\tyes\t{ZEROS}',
        'is not in the published format: line 2: expected a person, an image number >= 1 and '
        "numbers, got 'Aaron Eckhart\\t1\\tyes",
    ),
    'image number 0': (
        f'{ATTR_HEADER}\nAaron Eckhart\t0\t0.5\t{ZEROS}',
        'is not in the published format: line 2: expected a person, an image number >= 1',
    ),
    'a header and no rows': (
        f'{ATTR_HEADER}\n',
        'is not in the published format: it holds no rows',
    ),
    # Well formed, but not the labels of these images (or cut short).
    'another data set': (
        f'{ATTR_HEADER}\nSomeone Else\t1\t0.5\t{ZEROS}',
        f'labels 0 of the {sum(PEOPLE.values())} images in ',
    ),
    'cut short after 20 rows': (None, f'labels 20 of the {sum(PEOPLE.values())} images in '),
}


@pytest.mark.parametrize('case', sorted(BAD_ATTRIBUTES))
def test_malformed_attributes_file_is_a_one_line_error(manual, tmp_path, case):
  text, expected = BAD_ATTRIBUTES[case]
  if text is None:
    text = '\n'.join((epath.Path(manual) / lfw.ATTRIBUTES_FILE).read_text().splitlines()[:22])
  root = tmp_path / 'manual'
  root.mkdir()
  os.symlink(os.path.join(manual, 'lfw'), root / 'lfw')
  (root / lfw.ATTRIBUTES_FILE).write_text(text)
  msg = _one_line_error(_cfg(str(tmp_path / 'tfds'), str(root)))
  assert msg.startswith(f'{root / lfw.ATTRIBUTES_FILE} {expected}'), msg


def test_malformed_downloaded_attributes_name_their_url(manual, served, tmp_path):
  root = tmp_path / 'manual'
  root.mkdir()
  os.symlink(os.path.join(manual, 'lfw'), root / 'lfw')
  served[lfw.URLS['attributes']] = (lfw.ATTRIBUTES_FILE, b'<html>moved</html>')
  msg = _one_line_error(_cfg(str(tmp_path / 'tfds'), str(root)))
  assert msg.startswith(
      f'lfw_attributes.txt (downloaded from {lfw.URLS["attributes"]}) is not in the published '
      'format: no "# person'
  )


@pytest.mark.parametrize(
    'file,text,expected',
    [
        (
            'male_names.txt',
            'Aaron_Eckhart_0001.jpg\nAaron Eckhart 2\n',
            "is not in the published format: line 2 is 'Aaron Eckhart 2', not an image file name",
        ),
        (
            'female_names.txt',
            'Laura_Bush/Laura_Bush_0001.jpg\n',
            "line 1 is 'Laura_Bush/Laura_Bush_0001.jpg', not an image file name",
        ),
        (
            'female_names.txt',
            '\n\n',
            'is not in the published format: it holds no image file names',
        ),
    ],
)
def test_malformed_name_list_is_a_one_line_error(manual, tmp_path, file, text, expected):
  root = tmp_path / 'manual'
  root.mkdir()
  os.symlink(os.path.join(manual, 'lfw'), root / 'lfw')
  for f in lfw.NAMES_FILES:
    (root / f).write_text(text if f == file else (epath.Path(manual) / f).read_text())
  msg = _one_line_error(_cfg(str(tmp_path / 'tfds'), str(root), gender_source='names'))
  assert msg.startswith(f'{root / file} '), msg
  assert expected in msg
