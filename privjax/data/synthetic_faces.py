"""`synthetic_faces`: the embedded default data set, rendered locally (no download).

What lives here:

* ``identity_groups`` / ``split_indices`` -- the paper's protocol split (the mechanism every face
  builder shares, ``privjax.data.splits``): model-owner identities (``train`` / ``test`` are
  disjoint *people*) versus attacker identities (``attacker_train`` / ``attacker_test`` hold the
  *same* people, disjoint images: closed-set re-identification).
* ``SyntheticFaces`` -- the TFDS builder that writes the faces of
  ``privjax.data.face_renderer.generate_faces`` as ``array_record`` into the usual TFDS data dir,
  with configs named by their parameters (``ids200_img40_s64_seed0``) and the content digest of
  the pixels and labels in metadata.json (``privjax.data.digest``), plus the ``build`` and
  ``make_config`` helpers.

The output is a pure function of (generator version, config).

Must not import TensorFlow (images reach TFDS as PNG bytes, see ``privjax.data.encoding``) nor
privjax.models / privjax.train: data must stay independent of the models trained on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from privjax.data import builder_base, encoding, face_renderer, splits
from privjax.data import digest as digest_lib

DEFAULT_NUM_IDENTITIES = 200
DEFAULT_IMAGES_PER_IDENTITY = 40
DEFAULT_IMAGE_SIZE = 64
DEFAULT_SEED = 0
DEFAULT_OWNER_FRACTION = splits.DEFAULT_OWNER_FRACTION
DEFAULT_OWNER_TEST_FRACTION = splits.DEFAULT_OWNER_TEST_FRACTION

SPLITS = splits.SPLITS

# ---------------------------------------------------------------------------
# Protocol splits.
# ---------------------------------------------------------------------------


def identity_groups(
    num_identities: int,
    seed: int,
    gender: np.ndarray | None = None,
    owner_fraction: float = DEFAULT_OWNER_FRACTION,
    owner_test_fraction: float = DEFAULT_OWNER_TEST_FRACTION,
) -> dict[str, list[int]]:
  """Disjoint, gender-stratified identity groups of the paper's protocol (`splits`).

  Returns {'owner_train', 'owner_test', 'attacker'}: sorted lists of identity
  ids covering 0..num_identities-1.  `gender` is per identity (or per image,
  ordered by identity as `generate_faces` returns it); by default it is the
  gender `generate_faces` assigns for this seed.
  """
  splits.check_fractions(owner_fraction, owner_test_fraction)
  if gender is None:
    gender = face_renderer.identity_genders(num_identities, seed)
  gender = np.asarray(gender).reshape(-1)
  if gender.size != num_identities:
    if gender.size % num_identities:
      raise ValueError(f'gender has {gender.size} entries for {num_identities} identities')
    per_id = gender.reshape(num_identities, -1)
    if np.any(per_id != per_id[:, :1]):
      raise ValueError('per-image gender must be constant per identity (identity-ordered)')
    gender = per_id[:, 0]
  return splits.identity_groups(
      gender,
      face_renderer.rng(seed, face_renderer.STREAM_SPLIT),
      owner_fraction=owner_fraction,
      owner_test_fraction=owner_test_fraction,
  )


def split_indices(
    num_identities: int,
    images_per_identity: int,
    seed: int,
    owner_fraction: float = DEFAULT_OWNER_FRACTION,
    owner_test_fraction: float = DEFAULT_OWNER_TEST_FRACTION,
) -> dict[str, np.ndarray]:
  """Sorted global image indices (rows of `generate_faces`) of each split.

  train/test: all images of owner-train/owner-test identities.
  attacker_train/attacker_test: each attacker identity's images halved at
  random (the odd image, if any, goes to attacker_train).
  The prepared TFDS splits hold exactly these rows, in this order.
  """
  if images_per_identity < 2:
    raise ValueError('attacker splits need >= 2 images per identity')
  groups = identity_groups(num_identities, seed, None, owner_fraction, owner_test_fraction)
  identity = np.repeat(np.arange(num_identities), images_per_identity)
  return splits.split_rows(identity, groups, face_renderer.rng(seed, face_renderer.STREAM_SPLIT, 1))


# ---------------------------------------------------------------------------
# TFDS builder.
# ---------------------------------------------------------------------------

_NAME_RE = re.compile(
    r'^ids(\d+)_img(\d+)_s(\d+)_seed(\d+)(?:_own(\d+(?:p\d+)?)_test(\d+(?:p\d+)?))?$'
)


def config_name(
    num_identities: int,
    images_per_identity: int,
    image_size: int,
    seed: int,
    owner_fraction: float = DEFAULT_OWNER_FRACTION,
    owner_test_fraction: float = DEFAULT_OWNER_TEST_FRACTION,
) -> str:
  """Canonical config name, e.g. 'ids200_img40_s64_seed0'."""
  name = f'ids{num_identities}_img{images_per_identity}_s{image_size}_seed{seed}'
  if (owner_fraction, owner_test_fraction) != (DEFAULT_OWNER_FRACTION, DEFAULT_OWNER_TEST_FRACTION):
    own, test = (builder_base.name_token(float(f)) for f in (owner_fraction, owner_test_fraction))
    name += f'_own{own}_test{test}'
  return name


@dataclasses.dataclass(eq=False, kw_only=True)
class SyntheticFacesConfig(builder_base.NamedConfig):
  """Generation parameters; the prepared data is a pure function of them."""

  num_identities: int = DEFAULT_NUM_IDENTITIES
  images_per_identity: int = DEFAULT_IMAGES_PER_IDENTITY
  image_size: int = DEFAULT_IMAGE_SIZE
  seed: int = DEFAULT_SEED
  owner_fraction: float = DEFAULT_OWNER_FRACTION
  owner_test_fraction: float = DEFAULT_OWNER_TEST_FRACTION

  def __post_init__(self):
    super().__post_init__()
    if not self.description:
      self.description = (
          f'{self.num_identities} identities x {self.images_per_identity} images, '
          f'{self.image_size}x{self.image_size}, seed {self.seed}'
      )
    # Fail at construction, not half-way through preparing.
    split_indices(
        self.num_identities,
        self.images_per_identity,
        self.seed,
        self.owner_fraction,
        self.owner_test_fraction,
    )

  def params(self) -> dict[str, Any]:
    return {
        f: getattr(self, f)
        for f in (
            'num_identities',
            'images_per_identity',
            'image_size',
            'seed',
            'owner_fraction',
            'owner_test_fraction',
        )
    }

  def canonical_name(self) -> str:
    return config_name(**self.params())

  @classmethod
  def from_name(cls, name: str) -> SyntheticFacesConfig | None:
    if not (m := _NAME_RE.match(name)):
      return None
    ni, ipi, s, seed, own, test = m.groups()
    frac = lambda t, d: d if t is None else float(builder_base.parse_token(t))
    return cls(
        num_identities=int(ni),
        images_per_identity=int(ipi),
        image_size=int(s),
        seed=int(seed),
        owner_fraction=frac(own, DEFAULT_OWNER_FRACTION),
        owner_test_fraction=frac(test, DEFAULT_OWNER_TEST_FRACTION),
    )


class SyntheticFaces(builder_base.BaseBuilder):
  """Face-like portraits with gender / identity / smiling labels (no download)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.1.0': 'A content digest in metadata.json (the examples are unchanged).',
      '1.0.0': 'Initial release.',
  }
  CONFIG_CLASS = SyntheticFacesConfig
  BUILDER_CONFIGS = [
      SyntheticFacesConfig(name='default'),
      SyntheticFacesConfig(
          name='tiny',
          num_identities=24,
          images_per_identity=12,
          image_size=64,
          description='24 identities x 12 images, 64x64: for tests',
      ),
  ]
  DEFAULT_CONFIG_NAME = 'default'

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    s = cfg.image_size
    groups = identity_groups(
        cfg.num_identities, cfg.seed, None, cfg.owner_fraction, cfg.owner_test_fraction
    )
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Synthetic face-like portraits for the privacy-preserving inference '
            'protocol of Osia et al. 2017: gender fixed per identity, smiling '
            'per image, per-identity facial traits and per-image nuisance. '
            'Splits: train/test = disjoint owner identities; attacker_train/'
            'attacker_test = the same attacker identities, disjoint images.'
        ),
        features=tfds.features.FeaturesDict(
            {
                'image': tfds.features.Image(shape=(s, s, 3), encoding_format='png'),
                'identity': tfds.features.ClassLabel(num_classes=cfg.num_identities),
                'gender': tfds.features.ClassLabel(names=['female', 'male']),
                'smiling': tfds.features.ClassLabel(names=['no', 'yes']),
            }
        ),
        supervised_keys=('image', 'gender'),
        # Keep generation order (identity-major, = split_indices order) so a
        # split's row k is generate_faces row split_indices(...)[split][k].
        disable_shuffling=True,
        # Written to metadata.json in the prepared dir: a run's identity groups
        # can be recovered from the data alone (see builder_base.split_identities).
        metadata=tfds.core.MetadataDict(
            splits=groups,
            generator={'version': face_renderer.GENERATOR_VERSION, **cfg.params()},
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    data = face_renderer.generate_faces(
        cfg.num_identities, cfg.images_per_identity, cfg.image_size, cfg.seed
    )
    idx = split_indices(
        cfg.num_identities,
        cfg.images_per_identity,
        cfg.seed,
        cfg.owner_fraction,
        cfg.owner_test_fraction,
    )
    content = digest_lib.ContentHash(
        version=str(self.VERSION), generator=face_renderer.GENERATOR_VERSION
    )
    features = self.info.features
    for split in SPLITS:
      for i in idx[split]:
        content.add(
            split,
            hashlib.sha256(data['image'][i].tobytes()).hexdigest(),
            {k: features[k].int2str(int(data[k][i])) for k in ('identity', 'gender', 'smiling')},
        )
    self.info.metadata[digest_lib.METADATA_KEY] = content.hexdigest()
    return {split: self._generate_examples(data, idx[split]) for split in SPLITS}

  def _generate_examples(self, data, indices):
    for i in indices:
      i = int(i)
      yield i, {
          # Stored deflate: encoding with Pillow would dominate preparing the data.
          'image': encoding.encode_png(data['image'][i], level=0),
          'identity': int(data['identity'][i]),
          'gender': int(data['gender'][i]),
          'smiling': int(data['smiling'][i]),
      }


def make_config(
    num_identities: int = DEFAULT_NUM_IDENTITIES,
    images_per_identity: int = DEFAULT_IMAGES_PER_IDENTITY,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = DEFAULT_SEED,
    owner_fraction: float = DEFAULT_OWNER_FRACTION,
    owner_test_fraction: float = DEFAULT_OWNER_TEST_FRACTION,
) -> SyntheticFacesConfig:
  """Config for these parameters; the registered one ('default', 'tiny') when
  they match it, so the same data is never prepared twice under two names."""
  return SyntheticFaces.make_config(
      num_identities=num_identities,
      images_per_identity=images_per_identity,
      image_size=image_size,
      seed=seed,
      owner_fraction=owner_fraction,
      owner_test_fraction=owner_test_fraction,
  )


def build(
    config: str | SyntheticFacesConfig = 'default', data_dir: str | None = None
) -> tfds.core.DatasetBuilder:
  """Prepares the data set as array_record (no-op if already prepared) and
  returns its builder.  `data_dir` defaults to TFDS's (~/tensorflow_datasets)."""
  return SyntheticFaces.prepare(config, data_dir)
