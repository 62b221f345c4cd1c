"""The base of the builders over face photos (`image_folder`, `celeba_faces`, `lfw_faces`).

What lives here:

* ``FaceConfig`` / ``FaceBuilder`` -- an abstract TFDS builder over a list of ``Record`` s (image
  path, identity, class labels).  It inspects every image before any split is drawn: files that
  are missing, not regular files (a FIFO, a device, a directory: never opened, reading one would
  block) or unreadable are reported with their paths and skipped; then duplicates are dropped
  (``duplicate_groups``: the same prepared pixels, or near-identical ones, under any name: a
  symlink, a copy, a re-encoding), so that no image is in two splits.  A duplicate of a kept image
  with the same labels is dropped; a photo listed under different labels (two identities, or two
  genders) is dropped in every copy, since no one can say which label is right.  The builder then
  draws the identity-based protocol splits of ``privjax.data.splits`` (train/test: disjoint owner
  identities; attacker_train/attacker_test: the same attacker identities, disjoint images) from the
  config's seed, and writes ``array_record`` with the images decoded by Pillow, converted to RGB,
  centre-cropped to a square of `crop_fraction` of the shorter side, resized to `image_size` and
  stored as PNG.  The identity groups (as class indices and as names), the skipped and dropped
  files, the source and the content digest (``privjax.data.digest``: each file's bytes and labels,
  split by split) are written to the prepared data's metadata.json.  Configs are named by their
  parameters (``s64``, ``s64_crop0p8_seed1``), and such names parse back.
* Helpers for the subclasses: ``load_face``, ``inspect_image``, ``manual_dir``,
  ``extract_archive``, ``file_sha256``, ``sorted_values``, ``canonical``.

Must not import TensorFlow (images reach TFDS as PNG bytes and are read back with Pillow) nor
privjax.models / privjax.train.
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import dataclasses
import hashlib
import io
import logging
import os
import stat
import tarfile
import zipfile
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image, ImageOps

from privjax.data import builder_base, encoding, splits
from privjax.data import digest as digest_lib
from privjax.errors import DataError

DEFAULT_IMAGE_SIZE = 64
DEFAULT_CROP_FRACTION = 1.0
DEFAULT_SEED = 0

# Bump with the builders' VERSION whenever the split assignment changes (it seeds the draws).
# VERSION 1.1.0 drops duplicates before the same assignment: data without any keeps its splits.
_SPLIT_VERSION = 1
_STREAM_GROUPS, _STREAM_ROWS = range(2)
_MAX_WORKERS = 4  # Pillow releases the GIL while decoding, resizing and encoding
_CHUNK = 256  # images decoded ahead per worker: bounds memory at any image size
_PNG_LEVEL = 1  # array_record compresses records itself; higher levels only cost time
_REPORT_FIRST = 5  # skipped files named in the warning (all are counted)
# Near-identical images: grey thumbnails of NEAR_THUMB x NEAR_THUMB box averages of the prepared
# face whose RMS difference is at most NEAR_RMS grey levels. On 5,626 LFW photos at 64x64
# (benchmarks/results/near_duplicates.md): re-encoding (JPEG quality 50 to 95, PNG), resizing to
# 80% and greyscale conversion move a photo by at most 0.82 levels, brightening by 3 levels by 3;
# 4 pairs of LFW files (the same press photo, or video frames) lie at 1.8 to 3.0, every other
# pair above 8.8. Missed: mirrored or differently cropped copies (two in LFW, at 8.9 and 10.4).
NEAR_THUMB = 16
NEAR_RMS = 4.0
_NEAR_CHUNK = 1024  # thumbnails compared at a time: bounds the distance block's memory


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


def load_face(path, size: int, crop_fraction: float) -> Image.Image:
  """RGB `size` x `size` image of a file (a path or a binary file object): EXIF-rotated, centre
  square of `crop_fraction` x the shorter side.

  JPEGs are decoded at the smallest DCT scale that still covers the crop at `size` pixels, so
  large photos are fast and the result does not depend on how large they were beyond that.
  """
  with Image.open(path) as im:
    w, h = im.size
    if min(w, h) < 1:
      raise ValueError('empty image')
    side = crop_fraction * min(w, h)
    if im.format == 'JPEG' and side > size:
      im.draft('RGB', (max(1, int(w * size / side)), max(1, int(h * size / side))))
    im = ImageOps.exif_transpose(im)  # phones store portraits sideways plus a rotation tag
    im = im.convert('RGB')
  w, h = im.size
  side = max(1, int(round(crop_fraction * min(w, h))))
  left, top = (w - side) // 2, (h - side) // 2
  return im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))


@dataclasses.dataclass(frozen=True)
class Inspection:
  """What the inspection of one usable image found."""

  file_sha256: str  # of the file's bytes: the content digest's record of the image
  pixels_sha256: str  # of the prepared face's pixels: equal for the same image under any name
  thumb: np.ndarray  # uint8 [NEAR_THUMB ** 2], grey box averages of the face: near-identical ones


def _file_kind(mode: int) -> str:
  for is_kind, kind in (
      (stat.S_ISDIR, 'a directory'),
      (stat.S_ISFIFO, 'a FIFO'),
      (stat.S_ISCHR, 'a character device'),
      (stat.S_ISBLK, 'a block device'),
      (stat.S_ISSOCK, 'a socket'),
  ):
    if is_kind(mode):
      return kind
  return 'of another kind'


def read_regular(path: str) -> bytes | str:
  """The bytes of the regular file `path`, or why not ('missing', 'not a regular file (a FIFO)',
  'unreadable (...)'). Anything but a regular file is refused before it is opened: opening a FIFO
  waits for a writer, and a device can be read forever."""
  try:
    mode = os.stat(path).st_mode  # through symlinks: a link to a photo is that photo
  except FileNotFoundError:
    return 'missing'
  except OSError as e:
    return f'unreadable ({type(e).__name__}: {e.strerror or e})'
  if not stat.S_ISREG(mode):
    return f'not a regular file ({_file_kind(mode)})'
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    return f'unreadable ({type(e).__name__}: {e.strerror or e})'


def inspect_image(path: str, size: int, crop_fraction: float) -> Inspection | str:
  """The `Inspection` of the image at `path` as it will be prepared, or why it cannot be used."""
  data = read_regular(path)
  if isinstance(data, str):
    return data
  try:
    face = load_face(io.BytesIO(data), size, crop_fraction)
  except Exception as e:  # Pillow raises many types for bad files.
    return f'unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})'
  thumb = face.convert('L').resize((NEAR_THUMB, NEAR_THUMB), Image.Resampling.BOX)
  return Inspection(
      hashlib.sha256(data).hexdigest(),
      hashlib.sha256(np.asarray(face).tobytes()).hexdigest(),
      np.asarray(thumb, np.uint8).reshape(-1),
  )


def near_pairs(thumbs: np.ndarray, max_rms: float = NEAR_RMS) -> list[tuple[int, int]]:
  """Pairs (i < j) of rows of `thumbs` [N, D] whose RMS difference is at most `max_rms`.

  Exact, and far from N^2: the RMS difference bounds the difference of the means, so rows sorted
  by mean are compared only with those whose mean lies within `max_rms` (a band of the sorted
  order), a block at a time as one matrix product.
  """
  x = np.asarray(thumbs, np.float32).reshape(len(thumbs), -1)
  if len(x) < 2:
    return []
  dim = x.shape[1]
  mean = x.mean(1)
  order = np.argsort(mean, kind='stable')
  x, mean = x[order], mean[order]
  norms = (x * x).sum(1)
  bound = max_rms * max_rms * dim
  found = []
  for start in range(0, len(x), _NEAR_CHUNK):
    stop = min(start + _NEAR_CHUNK, len(x))
    end = int(np.searchsorted(mean, mean[stop - 1] + max_rms, side='right'))
    d2 = norms[start:stop, None] + norms[None, start:end] - 2.0 * (x[start:stop] @ x[start:end].T)
    # float32 rounding is far below the bound (norms < 2e7): candidates are checked exactly below.
    i, j = np.nonzero(d2 <= bound + 1.0)
    i, j = i + start, j + start
    keep = j > i
    found += zip(i[keep].tolist(), j[keep].tolist())
  exact = np.asarray(thumbs).reshape(len(thumbs), -1).astype(np.int64)
  pairs = []
  for a, b in found:
    a, b = int(order[a]), int(order[b])
    if ((exact[a] - exact[b]) ** 2).sum() <= bound:
      pairs.append((min(a, b), max(a, b)))
  return sorted(pairs)


def duplicate_groups(inspections: Sequence[Inspection]) -> list[list[int]]:
  """Groups (sorted indices, 2 or more) of the same image: equal prepared pixels, or thumbnails
  within NEAR_RMS (`near_pairs`), joined transitively (a ~ b and b ~ c: one group)."""
  parent = list(range(len(inspections)))

  def root(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  def join(i, j):
    parent[max(root(i), root(j))] = min(root(i), root(j))

  first = {}
  for i, inspection in enumerate(inspections):
    join(first.setdefault(inspection.pixels_sha256, i), i)
  if inspections:
    for i, j in near_pairs(np.stack([x.thumb for x in inspections])):
      join(i, j)
  groups = collections.defaultdict(list)
  for i in range(len(inspections)):
    groups[root(i)].append(i)
  return [g for g in groups.values() if len(g) > 1]


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

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.1.0': 'Duplicate images dropped; a content digest in metadata.json; only regular files.',
      '1.0.0': 'Initial release.',
  }
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
    found = _thread_map(lambda r: inspect_image(r.path, cfg.image_size, cfg.crop_fraction), records)
    problems = problems + [f'{r.path}: {x}' for r, x in zip(records, found) if isinstance(x, str)]
    usable = [(r, x) for r, x in zip(records, found) if not isinstance(x, str)]
    records, inspections = [r for r, _ in usable], [x for _, x in usable]
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
    kept, duplicates = self._drop_duplicates(records, inspections)
    records, inspections = [records[i] for i in kept], [inspections[i] for i in kept]

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
            'duplicates': duplicates,
            'source': source,
            'params': {**cfg.params(), 'split_version': _SPLIT_VERSION},
            digest_lib.METADATA_KEY: self._digest(records, inspections, rows),
        }
    )
    return {
        split: self._generate_examples(records, inspections, identity, rows[split])
        for split in splits.SPLITS
    }

  def _drop_duplicates(self, records, inspections) -> tuple[list[int], dict[str, Any]]:
    """(indices kept, the metadata's account of the dropped): one copy of each image whose copies
    agree on every label (the first listed); no copy of one listed under different labels."""
    dropped, kinds = {}, collections.Counter()
    for group in duplicate_groups(inspections):
      first = records[group[0]]
      labels = {(records[i].identity, tuple(sorted(records[i].labels.items()))) for i in group}
      if len(labels) > 1:
        people = sorted({records[i].identity for i in group})
        which = f'as {" and ".join(people)}' if len(people) > 1 else 'with other labels'
        for i in group:
          dropped[i] = (
              f'{records[i].path}: one of {len(group)} copies of an image listed {which}; '
              'every copy dropped'
          )
        kinds['conflicting'] += len(group)
        continue
      for i in group[1:]:
        same = inspections[i].pixels_sha256 == inspections[group[0]].pixels_sha256
        how = 'the same pixels as' if same else 'near-identical to'
        if records[i].path == first.path:
          dropped[i] = f'{first.path}: listed again'
        else:
          dropped[i] = f'{records[i].path}: {how} {first.path}'
        kinds['same_pixels' if same else 'near_identical'] += 1
    found = [dropped[i] for i in sorted(dropped)]
    if found:
      logging.warning(
          '%s: dropped %d duplicate images (%d with the same pixels as a kept one, %d '
          'near-identical, %d copies of images listed with different labels): %s%s',
          self.name,
          len(found),
          kinds['same_pixels'],
          kinds['near_identical'],
          kinds['conflicting'],
          '; '.join(found[:_REPORT_FIRST]),
          ' ...' if len(found) > _REPORT_FIRST else '',
      )
    account = {'count': len(found), **{k: kinds[k] for k in sorted(kinds)}, 'first': found[:100]}
    return [i for i in range(len(records)) if i not in dropped], account

  def _digest(self, records, inspections, rows) -> str:
    """The content digest: every example's file bytes and labels, split by split, in row order."""
    cfg = self.builder_config
    content = digest_lib.ContentHash(
        version=str(self.VERSION), image_size=cfg.image_size, crop_fraction=cfg.crop_fraction
    )
    features = self.info.features
    for split in splits.SPLITS:
      for i in rows[split]:
        r = records[int(i)]
        labels = {k: features[k].int2str(v) for k, v in r.labels.items()}
        content.add(split, inspections[int(i)].file_sha256, {'identity': r.identity, **labels})
    return content.hexdigest()

  def _generate_examples(self, records, inspections, identity, rows):
    cfg = self.builder_config

    def example(i):
      r = records[i]
      data = read_regular(r.path)
      if isinstance(data, str) or hashlib.sha256(data).hexdigest() != inspections[i].file_sha256:
        # Inspected earlier: the digest and the duplicates were found on other bytes.
        raise DataError(f'{self.name}: {r.path} changed during the build; prepare it again')
      try:
        image = encoding.encode_png(
            load_face(io.BytesIO(data), cfg.image_size, cfg.crop_fraction), _PNG_LEVEL
        )
      except Exception as e:  # decoded when inspected: Pillow itself failed this time
        raise DataError(f'{self.name}: {r.path} became unreadable during the build: {e}') from None
      return r.key, {'image': image, 'identity': int(identity[i]), **r.labels}

    for start in range(0, len(rows), _CHUNK * _MAX_WORKERS):
      yield from _thread_map(example, [int(i) for i in rows[start : start + _CHUNK * _MAX_WORKERS]])
