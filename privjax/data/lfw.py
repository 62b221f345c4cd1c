"""`lfw_faces`: Labeled Faces in the Wild with gender labels, as identity-split TFDS data.

Images and identities come from the standard archive layout ``lfw/<Person_Name>/
<Person_Name>_0001.jpg`` (``lfw.tgz``; variant ``deepfunneled``: ``lfw-deepfunneled.tgz`` with
``lfw-deepfunneled/``).  Gender comes from a published labelling, chosen by `gender_source`:

* ``attributes`` (default) -- ``lfw_attributes.txt`` of Kumar et al. (the PubFig project's
  "describable visual attributes" for LFW): header lines start with '#', the last of them names
  the tab-separated columns ``person  imagenum  Male ...``; a row is one image (person with
  spaces, image number), ``Male`` a classifier score (> 0: male).
* ``names`` -- the widely used ``male_names.txt`` / ``female_names.txt`` lists, one image file
  name per line (``Aaron_Eckhart_0001.jpg``).  No canonical download address is known to us, so
  they are read from the manual_dir only.

Gender is made per person: the mean of the person's image labels (+1 male / -1 female for the
name lists, the ``Male`` score for the attributes), > 0 meaning male, so every image of a person
gets one label and images the labelling skipped are still used; people with no labelled image
are left out (reported with the other skipped files).

Files are taken from the manual_dir when present there (the extracted ``lfw/`` folder or the
``.tgz``, and the label files), else downloaded from `URLS` with ``dl_manager.download``; archives
are extracted with Python's tarfile (TFDS's extractor needs TensorFlow).  A failed download is a
one-line error naming the files to place in the manual_dir.  No checksums file is shipped: we
could not download the files to compute them (TFDS's ``register_checksums`` flow records them on
a machine that can), so TFDS downloads without checking them.

Identity splits as every privjax face data set (``privjax.data.splits``): most LFW people have a
single image, so attacker identities are those with >= `min_images_per_identity` images (up to
the attacker's share); the others stay on the owner side.  Configs are named by their
parameters: ``s64`` (default), ``s224``, e.g. ``s64_vdeepfunneled_gnames``.

Must not import TensorFlow nor privjax.models / privjax.train.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from privjax.data import photo_builder
from privjax.data.pipeline import DataError

HOMEPAGE = 'http://vis-www.cs.umass.edu/lfw/'
URLS = {
    'original': 'http://vis-www.cs.umass.edu/lfw/lfw.tgz',
    'deepfunneled': 'http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz',
    'attributes': 'http://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt',
}
ARCHIVES = {
    'original': ('lfw.tgz', 'lfw'),  # variant -> (archive, folder inside it)
    'deepfunneled': ('lfw-deepfunneled.tgz', 'lfw-deepfunneled'),
}
ATTRIBUTES_FILE = 'lfw_attributes.txt'
NAMES_FILES = {'male_names.txt': 1.0, 'female_names.txt': -1.0}  # file -> label score
GENDER_SOURCES = ('attributes', 'names')
# People are cropped by the Viola-Jones box enlarged 2.2x: the central half holds the face.
DEFAULT_CROP_FRACTION = 0.5


@dataclasses.dataclass(eq=False, kw_only=True)
class LfwConfig(photo_builder.FaceConfig):
  """Face parameters plus the archive variant and the gender labelling."""

  crop_fraction: float = DEFAULT_CROP_FRACTION
  variant: str = 'original'
  gender_source: str = 'attributes'

  NAME_KEYS = {**photo_builder.FaceConfig.NAME_KEYS, 'variant': 'v', 'gender_source': 'g'}

  def __post_init__(self):
    if self.variant not in ARCHIVES:
      raise DataError(
          f'variant={self.variant!r} is not an LFW variant; choose one of: '
          f'{", ".join(ARCHIVES)}'
      )
    if self.gender_source not in GENDER_SOURCES:
      raise DataError(
          f'gender_source={self.gender_source!r} is not valid; choose one of: '
          f'{", ".join(GENDER_SOURCES)}'
      )
    super().__post_init__()


def image_name(person: str, number: int) -> str:
  return f'{person.replace(" ", "_")}_{int(number):04d}.jpg'


def read_attribute_scores(path) -> dict[str, float]:
  """{image file name: Male score} from lfw_attributes.txt."""
  columns, scores = None, {}
  for n, line in enumerate(epath.Path(path).read_text().splitlines(), start=1):
    if line.startswith('#'):
      fields = [f.strip() for f in line.lstrip('#').split('\t') if f.strip()]
      if 'person' in fields:
        columns = fields
      continue
    if not line.strip():
      continue
    if columns is None or 'Male' not in columns or 'imagenum' not in columns:
      raise DataError(f'{path} has no "# person imagenum Male ..." header before line {n}')
    values = line.split('\t')
    try:
      name = image_name(values[columns.index('person')], int(values[columns.index('imagenum')]))
      scores[name] = float(values[columns.index('Male')])
    except (ValueError, IndexError):
      raise DataError(f'{path} line {n}: expected {len(columns)} tab-separated columns') from None
  return scores


def read_name_lists(paths: dict[str, epath.Path]) -> dict[str, float]:
  """{image file name: +1 male / -1 female} from male_names.txt and female_names.txt."""
  scores = {}
  for file, path in paths.items():
    for line in path.read_text().splitlines():
      if line.strip():
        name = line.strip()
        scores[name] = scores.get(name, 0.0) + NAMES_FILES[file]
  return scores


class LfwFaces(photo_builder.FaceBuilder):
  """LFW faces with identity and gender."""

  name = 'lfw_faces'
  CONFIG_CLASS = LfwConfig
  BUILDER_CONFIGS = [LfwConfig(image_size=64), LfwConfig(image_size=224)]
  DEFAULT_CONFIG_NAME = 's64'
  DESCRIPTION = 'Labeled Faces in the Wild with identities and gender.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Optional (else downloaded): lfw.tgz or its extracted lfw/ folder (or the deep-funneled '
      f'equivalents) from {HOMEPAGE}, and {ATTRIBUTES_FILE} from {URLS["attributes"]}; for '
      f'gender_source=names: {" and ".join(NAMES_FILES)}.'
  )

  def _label_features(self):
    return {'gender': tfds.features.ClassLabel(names=['female', 'male'])}

  def _fetch(self, dl_manager, manual, url_key: str, file: str, what: str, extract: bool):
    """(path, origin): a file (or extracted archive folder) from the manual_dir, else downloaded."""
    if manual is not None and (manual / file).exists():
      path = origin = manual / file
    else:
      origin = URLS[url_key]
      try:
        path = epath.Path(dl_manager.download(origin))
      except Exception as e:  # network errors come in many types
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f'could not download {origin} ({reason}); put {what} in a manual_dir '
            f'({manual or "set --config.dataset.manual_dir"})'
        ) from None
    if extract:
      path = photo_builder.extract_archive(path, dl_manager.download_dir)
    return path, str(origin)

  def _records(self, dl_manager):
    cfg = self.builder_config
    manual = photo_builder.manual_dir(dl_manager)
    archive, folder = ARCHIVES[cfg.variant]
    if manual is not None and (manual / folder).is_dir():
      root, origin = manual / folder, str(manual / folder)
    else:
      root, origin = self._fetch(
          dl_manager,
          manual,
          cfg.variant,
          archive,
          f'{archive} or its extracted {folder}/ folder',
          True,
      )
      root = root / folder
    source = {'images': origin}
    if cfg.gender_source == 'names':
      missing = [f for f in NAMES_FILES if manual is None or not (manual / f).exists()]
      if missing:
        raise DataError(
            f'LFW gender from name lists needs {" and ".join(NAMES_FILES)} (one image '
            f'file name per line, e.g. Aaron_Eckhart_0001.jpg) in the manual_dir '
            f'({manual or "set --config.dataset.manual_dir"}); missing: '
            f'{", ".join(missing)}'
        )
      label_paths = {f: manual / f for f in NAMES_FILES}
      scores = read_name_lists(label_paths)
    else:
      path, origin = self._fetch(
          dl_manager, manual, 'attributes', ATTRIBUTES_FILE, ATTRIBUTES_FILE, False
      )
      label_paths, source['labels'] = {ATTRIBUTES_FILE: path}, origin
      scores = read_attribute_scores(path)
    source.update({f'{f}_sha256': photo_builder.file_sha256(p) for f, p in label_paths.items()})

    if not root.is_dir():
      raise DataError(
          f'{root} is not a folder; expected the LFW layout {folder}/<Person_Name>/'
          '<Person_Name>_0001.jpg'
      )
    files = sorted(
        (person.name, image.name)
        for person in root.iterdir()
        if person.is_dir()
        for image in person.iterdir()
        if image.name.lower().endswith('.jpg')
    )
    if not files:
      raise DataError(f'{root} holds no <Person_Name>/<Person_Name>_0001.jpg images')
    per_person: dict[str, list[float]] = {}
    for person, file in files:
      if file in scores:
        per_person.setdefault(person, []).append(scores[file])
    records, problems = [], []
    for key, (person, file) in enumerate(files):
      path = str(root / person / file)
      if person not in per_person:
        problems.append(f'{path}: no gender label for {person}')
        continue
      male = int(np.mean(per_person[person]) > 0)
      records.append(photo_builder.Record(key, path, person, {'gender': male}))
    return records, problems, {'gender_source': cfg.gender_source, **source}
