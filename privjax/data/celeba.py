"""`celeba_faces`: CelebA with identities, built from the official files in a manual_dir.

The aligned CelebA release (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, files on Google
Drive) cannot be downloaded unattended, so the builder reads the files placed in TFDS's
manual_dir (`--config.dataset.manual_dir=...` in a training config):

* ``img_align_celeba/`` -- the 178x218 aligned JPEGs (or ``img_align_celeba.zip``, extracted
  once into TFDS's download folder);
* ``list_attr_celeba.txt`` -- line 1: the image count; line 2: the 40 attribute names; then
  ``<file> <40 values of 1 or -1>``, whitespace separated;
* ``identity_CelebA.txt`` -- ``<file> <identity id>``;
* ``list_eval_partition.txt`` -- ``<file> 0|1|2`` (train / valid / test).

Features: ``image`` (centre square of `crop_fraction` x 178 px resized to `image_size`),
``identity`` (ClassLabel named by the CelebA identity ids, in numeric order), ``gender``
(``Male``: female / male), ``smiling`` (``Smiling``: no / yes) and ``eval_partition`` (the
official partition, recorded only: our splits are identity-based, see ``privjax.data.splits``;
attacker identities need `min_images_per_identity` images, the few with fewer stay on the owner
side).  Configs are named by their parameters: ``s64`` (default, the CPU path), ``s224`` (the
paper's VGG-16), or e.g. ``s64_crop0p8_seed1`` for other values.

Must not import TensorFlow nor privjax.models / privjax.train.
"""

from __future__ import annotations

import tensorflow_datasets as tfds
from etils import epath

from privjax.data import photo_builder
from privjax.errors import DataError

IMAGE_DIR = 'img_align_celeba'
IMAGE_ZIP = 'img_align_celeba.zip'
ATTR_FILE = 'list_attr_celeba.txt'
IDENTITY_FILE = 'identity_CelebA.txt'
PARTITION_FILE = 'list_eval_partition.txt'
PARTITIONS = ['train', 'valid', 'test']
HOMEPAGE = 'https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html'
# CelebA attribute -> (feature, class names for -1 and 1).
ATTRIBUTES = {'Male': ('gender', ['female', 'male']), 'Smiling': ('smiling', ['no', 'yes'])}

_WHERE = 'from the official CelebA page (Google Drive) and place it there'


def _need(manual: epath.Path, name: str) -> epath.Path:
  path = manual / name
  if not path.exists():
    raise DataError(f'CelebA needs {name} in {manual}; download it {_WHERE}')
  return path


def _lines(path: epath.Path) -> list[list[str]]:
  return [line.split() for line in path.read_text().splitlines() if line.strip()]


def read_attributes(path: epath.Path) -> tuple[list[str], list[tuple[str, list[int]]]]:
  """(attribute names, [(file name, values)]) of list_attr_celeba.txt."""
  lines = _lines(path)
  if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
    raise DataError(
        f'{path} is not list_attr_celeba.txt: it must start with the image count '
        'and a line of attribute names'
    )
  names, rows = lines[1], []
  for n, parts in enumerate(lines[2:], start=3):
    if len(parts) != len(names) + 1 or any(v not in ('1', '-1') for v in parts[1:]):
      raise DataError(f'{path} line {n}: expected a file name and {len(names)} values of 1 or -1')
    rows.append((parts[0], [int(v) for v in parts[1:]]))
  if len(rows) != int(lines[0][0]):
    raise DataError(f'{path} announces {lines[0][0]} images but lists {len(rows)}; is it complete?')
  return names, rows


def read_pairs(path: epath.Path) -> dict[str, str]:
  """{file name: value} of a two-column file (identity_CelebA.txt, list_eval_partition.txt)."""
  out = {}
  for n, parts in enumerate(_lines(path), start=1):
    if len(parts) != 2:
      raise DataError(f'{path} line {n}: expected "<file name> <value>"')
    out[parts[0]] = parts[1]
  return out


class CelebaFaces(photo_builder.FaceBuilder):
  """CelebA faces with identity, gender, smiling and the official partition."""

  name = 'celeba_faces'
  BUILDER_CONFIGS = [photo_builder.FaceConfig(image_size=s) for s in (64, 224)]
  DEFAULT_CONFIG_NAME = 's64'
  DESCRIPTION = 'CelebA (aligned) with identities, gender (Male) and smiling (Smiling).'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download from {HOMEPAGE} (Google Drive): {IMAGE_DIR}/ (or {IMAGE_ZIP}), {ATTR_FILE}, '
      f'{IDENTITY_FILE} and {PARTITION_FILE}, and place them in the manual_dir.'
  )

  def _label_features(self):
    return {
        **{
            feature: tfds.features.ClassLabel(names=names) for feature, names in ATTRIBUTES.values()
        },
        'eval_partition': tfds.features.ClassLabel(names=PARTITIONS),
    }

  def _records(self, dl_manager):
    manual = photo_builder.manual_dir(dl_manager)
    if manual is None:
      raise DataError(
          f'CelebA is built from its official files: set --config.dataset.manual_dir to a folder '
          f'holding {IMAGE_DIR}/, {ATTR_FILE}, {IDENTITY_FILE} and {PARTITION_FILE}, downloaded '
          f'{_WHERE}'
      )
    attr_path, id_path, part_path = (
        _need(manual, f) for f in (ATTR_FILE, IDENTITY_FILE, PARTITION_FILE)
    )
    if (manual / IMAGE_DIR).is_dir():
      images = manual / IMAGE_DIR
    elif (manual / IMAGE_ZIP).exists():
      images = (
          photo_builder.extract_archive(manual / IMAGE_ZIP, dl_manager.download_dir) / IMAGE_DIR
      )
    else:
      raise DataError(
          f'CelebA needs {IMAGE_DIR}/ (or {IMAGE_ZIP}) in {manual}; download it ' f'{_WHERE}'
      )
    names, rows = read_attributes(attr_path)
    missing = [a for a in ATTRIBUTES if a not in names]
    if missing:
      raise DataError(f'{attr_path} has no attribute {", ".join(missing)}')
    columns = {ATTRIBUTES[a][0]: names.index(a) for a in ATTRIBUTES}
    identities, partitions = read_pairs(id_path), read_pairs(part_path)
    records = []
    for key, (file, values) in enumerate(rows):
      for table, path in ((identities, id_path), (partitions, part_path)):
        if file not in table:
          raise DataError(f'{file} is in {attr_path.name} but not in {path}')
      if partitions[file] not in ('0', '1', '2'):
        raise DataError(f'{part_path}: partition of {file} is {partitions[file]!r}, not 0, 1 or 2')
      labels = {feature: int(values[i] > 0) for feature, i in columns.items()}
      labels['eval_partition'] = int(partitions[file])
      records.append(photo_builder.Record(key, str(images / file), identities[file], labels))
    source = {
        'homepage': HOMEPAGE,
        'manual_dir': str(manual),
        **{
            f'{p.name}_sha256': photo_builder.file_sha256(p)
            for p in (attr_path, id_path, part_path)
        },
    }
    return records, [], source
