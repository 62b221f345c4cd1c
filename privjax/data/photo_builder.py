"""The base of the builders over face photos (`image_folder`, `celeba_faces`, `lfw_faces`).

What lives here:

* ``FaceConfig`` / ``FaceBuilder`` -- an abstract TFDS builder over a list of ``Record`` s (image
  path, identity, class labels).  It checks every image before any split is drawn (missing and
  unreadable files are reported with their paths and skipped), draws the identity-based protocol
  splits of ``privjax.data.splits`` (train/test: disjoint owner identities; attacker_train/
  attacker_test: the same attacker identities, disjoint images) from the config's seed, and writes
  ``array_record`` with the images decoded by Pillow, converted to RGB, centre-cropped to a square
  of `crop_fraction` of the shorter side, resized to `image_size` and stored as PNG.  The identity
  groups (as class indices and as names), the skipped files and the source are written to the
  prepared data's metadata.json.  Configs are named by their parameters (``s64``,
  ``s64_crop0p8_seed1``), and such names parse back.
* Helpers for the subclasses: ``load_face``, ``check_image``, ``manual_dir``,
  ``extract_archive``, ``file_sha256``, ``sorted_values``, ``canonical``.

Must not import TensorFlow (images reach TFDS as PNG bytes and are read back with Pillow) nor
privjax.models / privjax.train.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import tarfile
import zipfile
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image, ImageOps

from privjax.data import builder_base, encoding, splits
from privjax.errors import DataError

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
# The builder.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(eq=False, kw_only=True)
class FaceConfig(builder_base.NamedConfig):
  """Parameters every face builder shares; the prepared data is a function of them (and files)."""

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
    super().__post_init__()

  def params(self) -> dict[str, Any]:
    return {
        f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in self.NAME_KEYS
    }

  def canonical_name(self) -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    return '_'.join(
        f'{key}{builder_base.name_token(getattr(self, field))}'
        for field, key in self.NAME_KEYS.items()
        if field == 'image_size' or getattr(self, field) != defaults[field]
    )

  @classmethod
  def from_name(cls, name: str) -> FaceConfig | None:
    keys = sorted(cls.NAME_KEYS.items(), key=lambda kv: -len(kv[1]))  # 'seed' before 's'
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    params = {}
    for token in name.split('_'):
      for field, key in keys:
        if token.startswith(key) and len(token) > len(key) and field not in params:
          raw = builder_base.parse_token(token[len(key) :])
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


class FaceBuilder(builder_base.BaseBuilder):
  """Identity-split face data from a list of image files (abstract: see `_records`)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  CONFIG_CLASS = FaceConfig
  PRIMARY = 'gender'  # the label that stratifies the identity groups (per identity, its mode)
  DESCRIPTION = ''

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
        image = encoding.encode_png(
            load_face(r.path, cfg.image_size, cfg.crop_fraction), _PNG_LEVEL
        )
      except Exception as e:  # checked readable earlier: the file changed during the build
        raise DataError(f'{self.name}: {r.path} became unreadable during the build: {e}') from None
      return r.key, {'image': image, 'identity': int(identity[i]), **r.labels}

    for start in range(0, len(rows), _CHUNK * _MAX_WORKERS):
      yield from _thread_map(example, [int(i) for i in rows[start : start + _CHUNK * _MAX_WORKERS]])
