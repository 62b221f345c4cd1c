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
one-line error naming the files to place in the manual_dir.

Checksums, the TFDS way: ``checksums.tsv`` next to this file (TFDS reads a builder's
``checksums.tsv`` from its code folder into ``url_infos``; ``DownloadManager`` then checks size and
SHA-256 of every download it lists) pins ``lfw.tgz`` at the mirror TFDS's own ``lfw`` builder and
scikit-learn use, with TFDS's published size and SHA-256.  A download that does not match is a
one-line error.  The other files have no published checksum: ``lfw-deepfunneled.tgz`` comes from
the LFW host unchecked, and the label files are checked for their format instead (header and
columns, parseable values, a non-empty file that labels at least half of the images), each failure
a one-line error naming the file.  Every archive's and label file's SHA-256 is recorded in the
prepared data's metadata (``source``); an ``lfw.tgz`` placed in the manual_dir that differs from
the published one is used as given, with a warning.

Identity splits as every privjax face data set (``privjax.data.splits``): most LFW people have a
single image, so attacker identities are those with >= `min_images_per_identity` images (up to
the attacker's share); the others stay on the owner side.  Configs are named by their
parameters: ``s64`` (default), ``s224``, e.g. ``s64_vdeepfunneled_gnames``.

Must not import TensorFlow nor privjax.models / privjax.train.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core.download import download_manager

from privjax.data import photo_builder
from privjax.errors import DataError

HOMEPAGE = 'http://vis-www.cs.umass.edu/lfw/'
CITATION = """\
@TechReport{LFWTech,
  author = {Gary B. Huang and Manu Ramesh and Tamara Berg and Erik Learned-Miller},
  title = {Labeled Faces in the Wild: A Database for Studying Face Recognition in Unconstrained
           Environments},
  institution = {University of Massachusetts, Amherst},
  year = {2007},
  number = {07-49},
  month = {October}
}
@InProceedings{Kumar2009Attribute,
  author = {Neeraj Kumar and Alexander C. Berg and Peter N. Belhumeur and Shree K. Nayar},
  title = {Attribute and Simile Classifiers for Face Verification},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  year = {2009}
}"""
# lfw.tgz: the mirror TFDS's `lfw` builder and scikit-learn download (its size and SHA-256 are in
# checksums.tsv); lfw-deepfunneled.tgz and the attributes have no published checksum.
URLS = {
    'original': 'https://ndownloader.figshare.com/files/5976018',
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
# A label file that names fewer of the images is not the one for this archive (the published ones
# label 99% of LFW), or was cut short.
MIN_LABELLED_FRACTION = 0.5
_IMAGE_NAME = re.compile(r'[^\s/\\]+_\d{4}\.jpg')  # Aaron_Eckhart_0001.jpg
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


def _format_error(what, detail: str) -> DataError:
  return DataError(f'{what} is not in the published format: {detail}')


def read_attribute_scores(path, what=None) -> dict[str, float]:
  """{image file name: Male score} from lfw_attributes.txt (`what` names it in errors; default:
  its path).

  The format is checked, as no checksum is published: a '#' header line naming the tab-separated
  columns (with person, imagenum and Male) before the first row, then rows of exactly those
  columns (trailing empty fields aside), an image number >= 1 and numbers in every other column.
  """
  what = what or path
  columns, scores = None, {}
  for n, line in enumerate(epath.Path(path).read_text().splitlines(), start=1):
    if line.startswith('#'):
      fields = [f.strip() for f in line.lstrip('#').split('\t') if f.strip()]
      if 'person' in fields:
        columns = fields
      continue
    if not line.strip():
      continue
    if columns is None or not {'person', 'imagenum', 'Male'} <= set(columns):
      raise _format_error(
          what, f'no "# person<TAB>imagenum<TAB>Male<TAB>..." header line before line {n}'
      )
    values = line.rstrip('\r').split('\t')
    while len(values) > len(columns) and not values[-1].strip():
      values.pop()
    if len(values) != len(columns):
      raise _format_error(
          what, f'line {n} has {len(values)} tab-separated fields, the header {len(columns)}'
      )
    row = dict(zip(columns, values))
    try:
      number = int(row['imagenum'])
      for column, value in row.items():
        if column not in ('person', 'imagenum'):
          float(value)
    except ValueError:
      number = 0
    if number < 1 or not row['person'].strip():
      raise _format_error(
          what, f'line {n}: expected a person, an image number >= 1 and numbers, got {line[:60]!r}'
      )
    scores[image_name(row['person'], number)] = float(row['Male'])
  if not scores:
    raise _format_error(what, 'it holds no rows')
  return scores


def read_name_lists(paths: dict[str, epath.Path], what=None) -> dict[str, float]:
  """{image file name: +1 male / -1 female} from male_names.txt and female_names.txt (keys of
  `paths`; `what` maps them to how errors name them, default: their paths).

  The format is checked, as no checksum is published: every non-empty line one image file name
  (``Aaron_Eckhart_0001.jpg``), and no empty list.
  """
  scores = {}
  for file, path in paths.items():
    name = (what or {}).get(file, path)
    lines = [line.strip() for line in epath.Path(path).read_text().splitlines()]
    for n, line in enumerate(lines, start=1):
      if line and not _IMAGE_NAME.fullmatch(line):
        raise _format_error(
            name, f'line {n} is {line[:60]!r}, not an image file name like Aaron_Eckhart_0001.jpg'
        )
    if not any(lines):
      raise _format_error(name, 'it holds no image file names')
    for line in filter(None, lines):
      scores[line] = scores.get(line, 0.0) + NAMES_FILES[file]
  return scores


def _checksum_error(url: str, error: Exception, expected, what: str, manual) -> DataError:
  """One line for TFDS's multi-line NonMatchingChecksumError (expected, then got, UrlInfo)."""
  got = re.findall(r"UrlInfo\(size=([^,]+), checksum='([0-9a-f]+)'", str(error))[1:]
  got = f'got {got[0][0]}, sha256 {got[0][1][:16]}...' if got else 'got a different file'
  return DataError(
      f'{url} does not match its published checksum (expected {expected.size}, sha256 '
      f'{expected.checksum[:16]}...; {got}): the download is damaged or the file changed; '
      f'retry, or put {what} in a manual_dir ({manual or "set --config.dataset.manual_dir"})'
  )


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

  def _info(self) -> tfds.core.DatasetInfo:
    info = super()._info()
    return tfds.core.DatasetInfo(
        builder=self,
        description=info.description,
        features=info.features,
        supervised_keys=info.supervised_keys,
        disable_shuffling=info.disable_shuffling,
        homepage=HOMEPAGE,
        citation=CITATION,
        metadata=info.metadata,
    )

  def _label_features(self):
    return {'gender': tfds.features.ClassLabel(names=['female', 'male'])}

  def _fetch(self, dl_manager, manual, url_key: str, file: str, what: str):
    """(path, origin): a file from the manual_dir, else downloaded (and checked against its
    published checksum, if `checksums.tsv` has one)."""
    if manual is not None and (manual / file).exists():
      return manual / file, str(manual / file)
    url = URLS[url_key]
    try:
      return epath.Path(dl_manager.download(url)), url
    except download_manager.NonMatchingChecksumError as e:  # not in the public API
      raise _checksum_error(url, e, self.url_infos[url], what, manual) from None
    except Exception as e:  # network errors come in many types
      reason = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise DataError(
          f'could not download {url} ({reason}); put {what} in a manual_dir '
          f'({manual or "set --config.dataset.manual_dir"})'
      ) from None

  def _images(self, dl_manager, manual) -> tuple[epath.Path, dict[str, str]]:
    """(the folder of <Person_Name>/ folders, its source for the metadata)."""
    archive, folder = ARCHIVES[self.builder_config.variant]
    if manual is not None and (manual / folder).is_dir():
      return manual / folder, {'images': str(manual / folder)}
    path, origin = self._fetch(
        dl_manager,
        manual,
        self.builder_config.variant,
        archive,
        f'{archive} or its extracted {folder}/ folder',
    )
    sha256 = photo_builder.file_sha256(path)
    url = URLS[self.builder_config.variant]
    published = (self.url_infos or {}).get(url)
    # A download was checked by TFDS; a manual archive may be an unpublished copy.
    if origin != url and published is not None and sha256 != published.checksum:
      logging.warning(
          '%s: %s differs from the published %s (sha256 %s, published %s); using it as given',
          self.name,
          origin,
          archive,
          sha256,
          published.checksum,
      )
    root = photo_builder.extract_archive(path, dl_manager.download_dir) / folder
    return root, {'images': origin, f'{archive}_sha256': sha256}

  def _scores(self, dl_manager, manual) -> tuple[dict[str, float], str, dict[str, str]]:
    """({image file name: gender score}, how errors name the label files, their source)."""
    if self.builder_config.gender_source == 'names':
      missing = [f for f in NAMES_FILES if manual is None or not (manual / f).exists()]
      if missing:
        raise DataError(
            f'LFW gender from name lists needs {" and ".join(NAMES_FILES)} (one image '
            f'file name per line, e.g. Aaron_Eckhart_0001.jpg) in the manual_dir '
            f'({manual or "set --config.dataset.manual_dir"}); missing: '
            f'{", ".join(missing)}'
        )
      paths = {f: manual / f for f in NAMES_FILES}
      scores = read_name_lists(paths)
      source, what = {}, ' and '.join(str(p) for p in paths.values())
    else:
      path, origin = self._fetch(dl_manager, manual, 'attributes', ATTRIBUTES_FILE, ATTRIBUTES_FILE)
      what = origin if origin == str(path) else f'{ATTRIBUTES_FILE} (downloaded from {origin})'
      paths, scores = {ATTRIBUTES_FILE: path}, read_attribute_scores(path, what)
      source = {'labels': origin}
    source.update({f'{f}_sha256': photo_builder.file_sha256(p) for f, p in paths.items()})
    return scores, what, source

  def _records(self, dl_manager):
    cfg = self.builder_config
    manual = photo_builder.manual_dir(dl_manager)
    root, source = self._images(dl_manager, manual)
    scores, labels_what, label_source = self._scores(dl_manager, manual)
    source.update(label_source)

    folder = ARCHIVES[cfg.variant][1]
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
    labelled = sum(file in scores for _, file in files)
    if labelled < MIN_LABELLED_FRACTION * len(files):
      raise DataError(
          f'{labels_what} labels {labelled} of the {len(files)} images in {root} (e.g. '
          f'{next(iter(scores))} vs {files[0][1]}): not the labels of this archive, or cut short'
      )
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
