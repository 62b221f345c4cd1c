"""`image_folder`: your own face photos, listed in a CSV, as a TFDS data set; plus the machinery
that every real-photo builder (`celeba_faces`, `lfw_faces`) shares.

What lives here:

* ``FaceConfig`` / ``FaceBuilder`` -- an abstract TFDS ``GeneratorBasedBuilder`` over a list of
  ``Record`` s (image path, identity, class labels).  It checks every image before any split is
  drawn (missing and unreadable files are reported with their paths and skipped), draws the
  identity-based protocol splits of ``privjax.data.splits`` (train/test: disjoint owner
  identities; attacker_train/attacker_test: the same attacker identities, disjoint images) from
  the config's seed, and writes ``array_record`` with the images decoded by Pillow, converted to
  RGB, centre-cropped to a square of `crop_fraction` of the shorter side, resized to
  `image_size` and stored as PNG.  The identity groups (as class indices and as names), the
  skipped files and the source are written to the prepared data's metadata.json.
* ``ImageFolder`` -- the builder for a CSV with columns ``path`` (relative to the CSV's folder),
  ``identity`` and attribute columns (``gender``, ``smiling``, ...; string or integer values).

Builder parameters come from a config object or from keyword arguments (``tfds.builder(
'image_folder', csv=..., primary='gender', attributes=('smiling',), image_size=64)``; the
training configs pass ``dataset.builder_kwargs``).  The config name is derived from the CSV's
content and the parameters, so editing the CSV or a parameter prepares a new data set instead of
reusing a stale one (edited image files are not detected: change the CSV or `prefix`).

Attribute values map to class indices in sorted order (numerically when every value is an
integer), stored as the ClassLabel names; identity names likewise.  Images are never shuffled:
a split's rows follow the CSV order.

This module must not import TensorFlow (images reach TFDS as PNG bytes and are read back with
Pillow) nor privjax.models / privjax.train.
"""

from __future__ import annotations

import abc
import concurrent.futures
import csv as csv_lib
import dataclasses
import hashlib
import inspect
import io
import json
import logging
import os
import re
import tarfile
import zipfile
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image, ImageOps
from tensorflow_datasets.core import utils as tfds_utils

from privjax.data import splits
from privjax.data.pipeline import DataError

DEFAULT_IMAGE_SIZE = 64
DEFAULT_CROP_FRACTION = 1.0
DEFAULT_SEED = 0

# Bump with the builders' VERSION whenever image processing or the split assignment changes.
_SPLIT_VERSION = 1
_STREAM_GROUPS, _STREAM_ROWS = range(2)
_MAX_WORKERS = 4  # Pillow releases the GIL while decoding, resizing and encoding
_CHUNK = 256  # images decoded ahead per worker: bounds memory at any image size
_PNG_LEVEL = 1  # array_record compresses records itself; higher levels only cost time
_REPORT_FIRST = 5  # skipped files named in the warning (all are counted)


@dataclasses.dataclass(frozen=True)
class Record:
  """One image of a source listing: its file, its person and its class labels."""

  key: int  # unique and stable (the row of the listing): the example key
  path: str
  identity: str
  labels: dict[str, int]


# ---------------------------------------------------------------------------
# Images.
# ---------------------------------------------------------------------------


def load_face(path: str, size: int, crop_fraction: float) -> Image.Image:
  """RGB `size` x `size` image: EXIF-rotated, centre square of `crop_fraction` x the shorter side.

  JPEGs are decoded at the smallest DCT scale that still covers the crop at `size` pixels, so
  large photos are fast and the result does not depend on how large they were beyond that.
  """
  with Image.open(path) as im:
    w, h = im.size
    side = crop_fraction * min(w, h)
    if im.format == 'JPEG' and side > size:
      im.draft('RGB', (max(1, int(w * size / side)), max(1, int(h * size / side))))
    im = ImageOps.exif_transpose(im)  # phones store portraits sideways plus a rotation tag
    im = im.convert('RGB')
  w, h = im.size
  side = max(1, int(round(crop_fraction * min(w, h))))
  left, top = (w - side) // 2, (h - side) // 2
  return im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))


def encode_png(im: Image.Image) -> bytes:
  buf = io.BytesIO()
  im.save(buf, format='PNG', compress_level=_PNG_LEVEL)
  return buf.getvalue()


def check_image(path: str) -> str | None:
  """None if `path` decodes as an image, else why not (a cheap, reduced-scale decode for JPEG)."""
  try:
    with Image.open(path) as im:
      im.draft('RGB', (8, 8))
      im.load()
      if min(im.size) < 1:
        return 'empty image'
  except FileNotFoundError:
    return 'missing'
  except Exception as e:  # Pillow raises many types for bad files.
    return f'unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})'
  return None


def manual_dir(dl_manager) -> epath.Path | None:
  """The manual-download folder if one was given and is not empty, else None."""
  try:
    return dl_manager.manual_dir
  except AssertionError:  # TFDS's way of saying "not given, missing or empty"
    return None


def extract_archive(archive, download_dir) -> epath.Path:
  """Extracts a .tar(.gz) or .zip once into `download_dir`/extracted/ and returns that folder.

  TFDS's own extractor needs TensorFlow; a finished extraction is reused (it is renamed into
  place only when complete).
  """
  archive = epath.Path(archive)
  dest = epath.Path(download_dir) / 'extracted' / f'{archive.name}.{archive.stat().length}'
  if dest.exists():
    return dest
  tmp = dest.parent / f'{dest.name}.incomplete.{os.getpid()}'
  tmp.mkdir(parents=True, exist_ok=True)
  if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z:
      z.extractall(tmp)
  else:
    with tarfile.open(archive, 'r:*') as tar:
      tar.extractall(tmp, filter='data')  # no absolute paths, links out, devices
  tmp.rename(dest)
  return dest


def file_sha256(path) -> str:
  h = hashlib.sha256()
  with epath.Path(path).open('rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def _thread_map(fn, items: Sequence) -> list:
  workers = max(1, min(_MAX_WORKERS, os.cpu_count() or 1, len(items)))
  if workers == 1:
    return [fn(x) for x in items]
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(fn, items))


def sorted_values(values: Iterable[str]) -> list[str]:
  """Distinct values in class-index order: numeric when all are integers, else lexicographic."""
  values = set(values)
  try:
    return [str(v) for v in sorted({int(v) for v in values})]
  except ValueError:
    return sorted(values)


def canonical(value: str) -> str:
  """The class name of a raw value ('01' and '1' are one class when they are integers)."""
  value = value.strip()
  try:
    return str(int(value))
  except ValueError:
    return value


# ---------------------------------------------------------------------------
# The shared builder.
# ---------------------------------------------------------------------------


def _fmt(value) -> str:
  if isinstance(value, float):
    return f'{value:g}'.replace('.', 'p').replace('-', 'm')  # config names are identifiers
  return str(value)


@dataclasses.dataclass(eq=False, kw_only=True)
class FaceConfig(tfds.core.BuilderConfig):
  """Parameters every face builder shares; the prepared data is a function of them (and files)."""

  name: str = ''  # '' -> derived from the parameters
  image_size: int = DEFAULT_IMAGE_SIZE
  crop_fraction: float = DEFAULT_CROP_FRACTION
  seed: int = DEFAULT_SEED
  owner_fraction: float = splits.DEFAULT_OWNER_FRACTION
  owner_test_fraction: float = splits.DEFAULT_OWNER_TEST_FRACTION
  min_images_per_identity: int = splits.DEFAULT_MIN_IMAGES_PER_IDENTITY

  # Parameter -> name token prefix, for names that can be parsed back (see `from_name`).
  # image_size always appears; other parameters only when they differ from their default.
  NAME_KEYS = {
      'image_size': 's',
      'crop_fraction': 'crop',
      'seed': 'seed',
      'owner_fraction': 'own',
      'owner_test_fraction': 'test',
      'min_images_per_identity': 'min',
  }

  def __post_init__(self):
    # Restored run configs may hold these as other number types; names and hashes need one.
    for field in ('image_size', 'seed', 'min_images_per_identity'):
      setattr(self, field, int(getattr(self, field)))
    for field in ('crop_fraction', 'owner_fraction', 'owner_test_fraction'):
      setattr(self, field, float(getattr(self, field)))
    if self.image_size < 8:
      raise DataError(f'image_size must be >= 8, got {self.image_size}')
    if not 0.0 < self.crop_fraction <= 1.0:
      raise DataError(f'crop_fraction must be in (0, 1], got {self.crop_fraction}')
    if self.min_images_per_identity < 2:
      raise DataError(
          'min_images_per_identity must be >= 2 (attacker identities are split '
          'between attacker_train and attacker_test), got '
          f'{self.min_images_per_identity}'
      )
    try:
      splits.check_fractions(self.owner_fraction, self.owner_test_fraction)
    except ValueError as e:
      raise DataError(str(e)) from None
    if not self.name:
      self.name = self.canonical_name()

  def params(self) -> dict[str, Any]:
    return {
        f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in self.NAME_KEYS
    }

  def canonical_name(self) -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    return '_'.join(
        f'{key}{_fmt(getattr(self, field))}'
        for field, key in self.NAME_KEYS.items()
        if field == 'image_size' or getattr(self, field) != defaults[field]
    )

  @classmethod
  def from_name(cls, name: str) -> 'FaceConfig | None':
    """The config whose canonical name is `name`, or None if `name` is not one."""
    keys = sorted(cls.NAME_KEYS.items(), key=lambda kv: -len(kv[1]))  # 'seed' before 's'
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    params = {}
    for token in name.split('_'):
      for field, key in keys:
        if token.startswith(key) and len(token) > len(key) and field not in params:
          raw = token[len(key) :].replace('p', '.').replace('m', '-')
          try:
            params[field] = {'int': int, 'float': float}.get(types[field], str)(
                token[len(key) :] if types[field] == 'str' else raw
            )
          except ValueError:
            return None
          break
      else:
        return None
    try:
      cfg = cls(**params)
    except (DataError, TypeError):
      return None
    return cfg if cfg.name == name else None


_TFDS_KWARGS = {
    p
    for cls in (tfds.core.GeneratorBasedBuilder, tfds.core.DatasetBuilder)
    for p in inspect.signature(cls.__init__).parameters
} - {'self', 'kwargs'}


class FaceBuilder(tfds.core.GeneratorBasedBuilder):
  """Identity-split face data from a list of image files (abstract: see `_records`)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  CONFIG_CLASS = FaceConfig
  PRIMARY = 'gender'  # the label that stratifies the identity groups (per identity, its mode)
  DESCRIPTION = ''

  def __init__(self, *, config: str | FaceConfig | None = None, **kwargs):
    own = {f.name for f in dataclasses.fields(self.CONFIG_CLASS)} - {
        f.name for f in dataclasses.fields(tfds.core.BuilderConfig)
    }
    unknown = sorted(set(kwargs) - own - _TFDS_KWARGS)
    if unknown:
      raise DataError(
          f'{self.name} has no parameter {", ".join(unknown)}; valid: ' f'{", ".join(sorted(own))}'
      )
    params = {k: kwargs.pop(k) for k in list(kwargs) if k in own}
    if params:
      if config is not None:
        raise DataError(f'{self.name}: give either a config or its parameters, not both')
      config = self.make_config(**params)
    # array_record by default: tfrecord (TFDS's default) needs TensorFlow, and only
    # array_record supports random-access `data_source` reading.
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(config=self._resolve(config), **kwargs)

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default probes the optional `importlib_resources` package (not installed here) and
    # crashes; the source file is what it would return.
    return epath.Path(inspect.getfile(cls))

  # One config object per name (TFDS checks identity), per builder class.
  _CONFIGS: dict[str, FaceConfig]

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    cls._CONFIGS = {}

  @classmethod
  def make_config(cls, **params) -> FaceConfig:
    cfg = cls.CONFIG_CLASS(**params)
    for registered in cls.BUILDER_CONFIGS:
      if registered.name == cfg.name:
        return registered
    return cls._CONFIGS.setdefault(cfg.name, cfg)

  @classmethod
  def get_builder_config(cls, name, version=None):
    """Also accepts the canonical names of unregistered configs ('s224_seed3')."""
    cfg = super().get_builder_config(name, version)
    if cfg is None:
      cfg = cls._CONFIGS.get(name)
    if cfg is None and (parsed := cls.CONFIG_CLASS.from_name(name)) is not None:
      cfg = cls._CONFIGS.setdefault(name, parsed)
    return cfg

  @classmethod
  def _resolve(cls, config):
    if isinstance(config, FaceConfig):
      known = cls.get_builder_config(config.name)
      if known is not None and known is not config:
        return known
      cls._CONFIGS.setdefault(config.name, config)
    return config

  # -- subclass hooks -------------------------------------------------------

  @abc.abstractmethod
  def _label_features(self) -> dict[str, tfds.features.ClassLabel]:
    """Class-label features besides `image` and `identity` (must include PRIMARY)."""

  @abc.abstractmethod
  def _records(self, dl_manager) -> tuple[list[Record], list[str], dict[str, Any]]:
    """(records, problems, source): the images to use, why listed images were left out, and
    where they came from (stored in metadata.json, e.g. the label files' checksums)."""

  # -- TFDS -----------------------------------------------------------------

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION
        + (
            ' Splits: train/test = disjoint model-owner identities; attacker_train/'
            'attacker_test = the same attacker identities, disjoint images. Identity groups, '
            'skipped files and the source are in metadata.json.'
        ),
        features=tfds.features.FeaturesDict(
            {
                'image': tfds.features.Image(shape=(s, s, 3), encoding_format='png'),
                # Names are set from the data when it is prepared (see _split_generators).
                'identity': tfds.features.ClassLabel(),
                **self._label_features(),
            }
        ),
        supervised_keys=('image', self.PRIMARY),
        disable_shuffling=True,  # a split's rows keep the source order
        metadata=tfds.core.MetadataDict(),
    )

  def _rng(self, stream: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(self.builder_config.seed), _SPLIT_VERSION, stream])
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    records, problems, source = self._records(dl_manager)
    reasons = _thread_map(lambda r: check_image(r.path), records)
    problems = problems + [f'{r.path}: {why}' for r, why in zip(records, reasons) if why]
    records = [r for r, why in zip(records, reasons) if not why]
    if problems:
      logging.warning(
          '%s: skipped %d of %d images: %s%s',
          self.name,
          len(problems),
          len(problems) + len(records),
          '; '.join(problems[:_REPORT_FIRST]),
          ' ...' if len(problems) > _REPORT_FIRST else '',
      )
    if not records:
      raise DataError(
          f'{self.name}: no usable image'
          + (f' ({len(problems)} skipped, first: {problems[0]})' if problems else '')
      )

    names = sorted_values(r.identity for r in records)
    self.info.features['identity'].names = names
    index = {n: i for i, n in enumerate(names)}
    identity = np.array([index[r.identity] for r in records], np.int64)
    primary = np.array([r.labels[self.PRIMARY] for r in records], np.int64)
    strata = splits.per_identity_mode(identity, primary, len(names))
    counts = np.bincount(identity, minlength=len(names))
    try:
      groups = splits.identity_groups(
          strata,
          self._rng(_STREAM_GROUPS),
          owner_fraction=cfg.owner_fraction,
          owner_test_fraction=cfg.owner_test_fraction,
          counts=counts,
          min_images_per_identity=cfg.min_images_per_identity,
      )
      rows = splits.split_rows(identity, groups, self._rng(_STREAM_ROWS))
    except ValueError as e:
      raise DataError(
          f'{self.name}: {e} ({len(records)} images of {len(names)} identities)'
      ) from None

    self.info.metadata.update(
        {
            # Same layout as synthetic_faces: class indices of the identity feature.
            'splits': groups,
            'split_names': {k: [names[i] for i in ids] for k, ids in groups.items()},
            'skipped': {'count': len(problems), 'first': problems[:100]},
            'source': source,
            'params': {**cfg.params(), 'split_version': _SPLIT_VERSION},
        }
    )
    return {
        split: self._generate_examples(records, identity, rows[split]) for split in splits.SPLITS
    }

  def _generate_examples(self, records, identity, rows):
    cfg = self.builder_config

    def example(i):
      r = records[i]
      try:
        image = encode_png(load_face(r.path, cfg.image_size, cfg.crop_fraction))
      except Exception as e:  # checked readable earlier: the file changed during the build
        raise DataError(f'{self.name}: {r.path} became unreadable during the build: {e}') from None
      return r.key, {'image': image, 'identity': int(identity[i]), **r.labels}

    for start in range(0, len(rows), _CHUNK * _MAX_WORKERS):
      yield from _thread_map(example, [int(i) for i in rows[start : start + _CHUNK * _MAX_WORKERS]])


# ---------------------------------------------------------------------------
# image_folder: a CSV of your own photos.
# ---------------------------------------------------------------------------

_RESERVED = ('path', 'identity', 'image')


@dataclasses.dataclass(eq=False, kw_only=True)
class ImageFolderConfig(FaceConfig):
  """A CSV (`path`, `identity`, attribute columns) and what to take from it.

  `primary` is the model owner's task (it also stratifies the identity groups); `attributes`
  are further columns to include as labels, e.g. attributes to attack.  The config name is
  `prefix` (default: the CSV's file name), the image size and a hash of the CSV's content and the
  parameters.
  """

  csv: str = ''
  primary: str = 'gender'
  attributes: tuple[str, ...] = ()
  prefix: str = ''

  def __post_init__(self):
    if not self.csv:
      raise DataError(
          'image_folder needs a CSV of your photos: pass csv=/path/to/faces.csv '
          '(--config.dataset.builder_kwargs.csv=... in a training config)'
      )
    self.csv = os.path.abspath(os.path.expanduser(str(self.csv)))
    attributes = self.attributes or ()
    if isinstance(attributes, str):  # 'smiling' or 'smiling,glasses' from a command line
      attributes = re.split(r'[,+\s]+', attributes.strip())
    self.attributes = tuple(a for a in dict.fromkeys(attributes) if a and a != self.primary)
    self.name = 'pending'  # FaceConfig validates the common parameters first
    super().__post_init__()
    self.table = _read_table(self.csv, (self.primary,) + self.attributes)
    slug = (
        re.sub(
            r'[^a-z0-9]+',
            '_',
            (self.prefix or os.path.splitext(os.path.basename(self.csv))[0]).lower(),
        ).strip('_')
        or 'faces'
    )
    digest = hashlib.sha256(
        json.dumps([self.table.sha256, self.primary, self.attributes, super().params()]).encode()
    ).hexdigest()
    self.name = f'{slug}_s{self.image_size}_{digest[:10]}'
    if not self.description:
      self.description = f'{os.path.basename(self.csv)}: {len(self.table.rows)} listed images'

  def params(self) -> dict[str, Any]:
    return {
        **super().params(),
        'csv': self.csv,
        'primary': self.primary,
        'attributes': list(self.attributes),
    }

  @classmethod
  def from_name(cls, name):
    return None  # a name stands for a CSV's content: the CSV must be given


@dataclasses.dataclass
class _Table:
  sha256: str
  rows: list[tuple[int, dict[str, str]]]  # (CSV line number, row)
  classes: dict[str, list[str]]  # attribute -> class names in index order


def _read_table(path: str, attributes: Sequence[str]) -> _Table:
  """Reads and checks the CSV; every error names the file and says what to change."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(f'image_folder CSV {path} does not exist') from None
  text = data.decode('utf-8-sig')  # spreadsheets often write a byte-order mark
  reader = csv_lib.DictReader(io.StringIO(text))
  columns = [c.strip() for c in reader.fieldnames or []]
  reader.fieldnames = columns
  found = ', '.join(columns) if columns else 'none'
  missing = [c for c in ('path', 'identity') if c not in columns]
  if missing:
    raise DataError(
        f'{path} has no {" or ".join(repr(c) for c in missing)} column; it needs '
        f'path, identity and attribute columns; columns found: {found}'
    )
  for a in attributes:
    if a in _RESERVED:
      raise DataError(f'{a!r} cannot be an attribute of image_folder (it is a reserved feature)')
    if a not in columns:
      raise DataError(
          f'{path} has no column {a!r} (requested as primary or attribute); '
          f'columns found: {found}'
      )
  rows = [
      (n + 2, {k: (v or '').strip() for k, v in row.items() if k is not None})
      for n, row in enumerate(reader)
  ]
  if not rows:
    raise DataError(f'{path} lists no image')
  classes = {}
  for a in attributes:
    names = sorted_values(canonical(row[a]) for _, row in rows if row[a])
    if len(names) < 2:
      raise DataError(
          f'attribute {a!r} in {path} has a single class '
          f'({names[0] if names else "no value"!r}); it cannot be a primary task or '
          'a secret'
      )
    classes[a] = names
  return _Table(hashlib.sha256(data).hexdigest(), rows, classes)


class ImageFolder(FaceBuilder):
  """Your own face photos: a CSV `path,identity,<attributes>` (see the module docstring)."""

  CONFIG_CLASS = ImageFolderConfig
  DESCRIPTION = 'Face photos listed in a CSV (path, identity, attribute columns).'

  @property
  def PRIMARY(self):  # noqa: N802 -- the base class reads it as a constant
    return self.builder_config.primary

  def _label_features(self):
    cfg = self.builder_config
    return {
        a: tfds.features.ClassLabel(names=cfg.table.classes[a])
        for a in (cfg.primary,) + cfg.attributes
    }

  def _records(self, dl_manager):
    del dl_manager  # the photos are local
    cfg = self.builder_config
    folder = os.path.dirname(cfg.csv)
    attributes = (cfg.primary,) + cfg.attributes
    index = {a: {n: i for i, n in enumerate(cfg.table.classes[a])} for a in attributes}
    records, problems, seen = [], [], {}
    for line, row in cfg.table.rows:
      empty = [c for c in ('path', 'identity') + attributes if not row[c]]
      if empty:
        problems.append(f'{os.path.basename(cfg.csv)} line {line}: empty {", ".join(empty)}')
        continue
      path = os.path.normpath(os.path.join(folder, row['path']))
      if path in seen:
        problems.append(f'{path}: listed again on line {line} (first on line {seen[path]})')
        continue
      seen[path] = line
      records.append(
          Record(
              line,
              path,
              canonical(row['identity']),
              {a: index[a][canonical(row[a])] for a in attributes},
          )
      )
    return records, problems, {'csv': cfg.csv, 'csv_sha256': cfg.table.sha256}


def build(data_dir: str | None = None, **params) -> tfds.core.DatasetBuilder:
  """Prepares an image_folder data set (no-op if already prepared) and returns its builder."""
  builder = ImageFolder(data_dir=data_dir, **params)
  builder.download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(try_download_gcs=False),
  )
  return builder
