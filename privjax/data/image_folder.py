"""`image_folder`: your own face photos, listed in a CSV, as a TFDS data set.

The CSV has the columns ``path`` (relative to the CSV's folder), ``identity`` and attribute columns
(``gender``, ``smiling``, ...; string or integer values).  Checking the images, the identity splits
and the image processing are every photo builder's (``privjax.data.photo_builder``).

A photo listed twice, under the same or another name (a symlink, a copy, a re-encoding), is kept
once, or dropped in every copy when its labels differ (see ``photo_builder``).

Builder parameters come from a config object or from keyword arguments (``tfds.builder(
'image_folder', csv=..., primary='gender', attributes=('smiling',), image_size=64)``; the
training configs pass ``dataset.builder_kwargs``).  The config name is derived from the CSV's
content and the parameters, so editing the CSV or a parameter prepares a new data set instead of
reusing a stale one (edited image files are not detected: change the CSV or `prefix`).

Attribute values map to class indices in sorted order (numerically when every value is an
integer), stored as the ClassLabel names; identity names likewise.  Images are never shuffled:
a split's rows follow the CSV order.

Must not import TensorFlow nor privjax.models / privjax.train.
"""

from __future__ import annotations

import csv as csv_lib
import dataclasses
import hashlib
import io
import json
import os
import re
from typing import Any, Sequence

import tensorflow_datasets as tfds

from privjax.data import photo_builder
from privjax.errors import DataError

_RESERVED = ('path', 'identity', 'image')


@dataclasses.dataclass(eq=False, kw_only=True)
class ImageFolderConfig(photo_builder.FaceConfig):
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

  def same_data(self, other) -> bool:
    # The name hashes the CSV's content and the parameters, not where the CSV lies: a moved
    # folder reuses its prepared data.
    return self.name == other.name

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
    names = photo_builder.sorted_values(
        photo_builder.canonical(row[a]) for _, row in rows if row[a]
    )
    if len(names) < 2:
      raise DataError(
          f'attribute {a!r} in {path} has a single class '
          f'({names[0] if names else "no value"!r}); it cannot be a primary task or '
          'a secret'
      )
    classes[a] = names
  return _Table(hashlib.sha256(data).hexdigest(), rows, classes)


class ImageFolder(photo_builder.FaceBuilder):
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
    records, problems = [], []
    for line, row in cfg.table.rows:
      empty = [c for c in ('path', 'identity') + attributes if not row[c]]
      if empty:
        problems.append(f'{os.path.basename(cfg.csv)} line {line}: empty {", ".join(empty)}')
        continue
      # A file listed twice is a duplicate like any other (photo_builder drops it by content).
      path = os.path.normpath(os.path.join(folder, row['path']))
      records.append(
          photo_builder.Record(
              line,
              path,
              photo_builder.canonical(row['identity']),
              {a: index[a][photo_builder.canonical(row[a])] for a in attributes},
          )
      )
    return records, problems, {'csv': cfg.csv, 'csv_sha256': cfg.table.sha256}


def build(data_dir: str | None = None, **params) -> tfds.core.DatasetBuilder:
  """Prepares an image_folder data set (no-op if already prepared) and returns its builder."""
  return ImageFolder.prepare(data_dir=data_dir, **params)
