"""What every privjax TFDS builder shares: configs named by their parameters, one registry of them,
array_record output and TFDS's `code_path` workaround.

What lives here:

* ``NamedConfig`` -- a ``tfds.core.BuilderConfig`` whose prepared data is a function of
  ``params()`` (and of source files, for photos).  An empty name becomes ``canonical_name()``;
  ``from_name`` parses such a name back, so TFDS can open an unregistered config by name.
* ``BaseBuilder`` -- the abstract ``GeneratorBasedBuilder`` of every privjax data set
  (``synthetic_faces`` directly, the photo builders through ``photo_builder.FaceBuilder``):
  config parameters as keyword arguments (``tfds.builder('image_folder', csv=...)``), one config
  object per name and per builder class, the same config for the same parameters (so the same data
  is never prepared twice under two names), array_record by default, and ``prepare``.
* ``name_token`` / ``parse_token`` -- numbers in config names.
* ``split_identities`` -- the identity groups a prepared data set stores in its metadata.json.

Must not import TensorFlow nor privjax.models / privjax.train.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from privjax.errors import DataError


@dataclasses.dataclass(eq=False, kw_only=True)
class NamedConfig(tfds.core.BuilderConfig):
  """A config named by its parameters (subclasses define `params` and `canonical_name`)."""

  name: str = ''  # '' -> canonical_name()

  def __post_init__(self):
    if not self.name:
      self.name = self.canonical_name()

  def params(self) -> dict[str, Any]:
    """What the prepared data is a function of (with the source files, if any)."""
    raise NotImplementedError

  def canonical_name(self) -> str:
    raise NotImplementedError

  def same_data(self, other: NamedConfig) -> bool:
    """Whether `other` prepares the same data (then it may share this config's name)."""
    return self.params() == other.params()

  @classmethod
  def from_name(cls, name: str) -> NamedConfig | None:
    """The config whose canonical name is `name`, or None if `name` is not one."""
    del name
    return None


def name_token(value) -> str:
  """`value` as part of a config name: names are identifiers, so 0.25 -> '0p25', -1.5 -> 'm1p5'."""
  if isinstance(value, float):
    return f'{value:g}'.replace('.', 'p').replace('-', 'm')
  return str(value)


def parse_token(token: str) -> str:
  """The number text of a `name_token` ('0p25' -> '0.25')."""
  return token.replace('p', '.').replace('m', '-')


# Keyword arguments that belong to TFDS rather than to a config.
_TFDS_KWARGS = {
    p
    for cls in (tfds.core.GeneratorBasedBuilder, tfds.core.DatasetBuilder)
    for p in inspect.signature(cls.__init__).parameters
} - {'self', 'kwargs'}

_DOWNLOAD_CONFIG = dict(try_download_gcs=False)  # none of our data sets is on GCS


class BaseBuilder(tfds.core.GeneratorBasedBuilder):
  """A privjax data set builder (abstract: TFDS's `_info`, `_split_generators`, ...)."""

  CONFIG_CLASS: type[NamedConfig] = NamedConfig

  # One config object per name (TFDS checks identity), per builder class.
  _CONFIGS: dict[str, NamedConfig]

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    cls._CONFIGS = {}

  def __init__(self, *, config: str | NamedConfig | None = None, **kwargs):
    own = {f.name for f in dataclasses.fields(self.CONFIG_CLASS)} - {
        f.name for f in dataclasses.fields(tfds.core.BuilderConfig)
    }
    unknown = sorted(set(kwargs) - own - _TFDS_KWARGS)
    if unknown:
      raise DataError(
          f'{self.name} has no parameter {", ".join(unknown)}; valid: {", ".join(sorted(own))}'
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

  @classmethod
  def _register(cls, cfg: NamedConfig) -> NamedConfig:
    """The registered config with `cfg`'s parameters if there is one, else `cfg` under its name."""
    for registered in cls.BUILDER_CONFIGS:
      if registered.same_data(cfg):
        return registered
    return cls._CONFIGS.setdefault(cfg.name, cfg)

  @classmethod
  def make_config(cls, **params) -> NamedConfig:
    return cls._register(cls.CONFIG_CLASS(**params))

  @classmethod
  def get_builder_config(cls, name, version=None):
    """Also accepts the canonical names of unregistered configs."""
    cfg = super().get_builder_config(name, version)
    if cfg is None:
      cfg = cls._CONFIGS.get(name)
    if cfg is None and (parsed := cls.CONFIG_CLASS.from_name(name)) is not None:
      cfg = cls._register(parsed)
    return cfg

  @classmethod
  def _resolve(cls, config):
    """Maps a config object to the one TFDS knows under its name, registering new ones."""
    if isinstance(config, NamedConfig):
      known = cls.get_builder_config(config.name)
      if known is not None and known is not config:
        if not known.same_data(config):
          raise DataError(
              f'{cls.name}: config name {config.name!r} is taken by different parameters'
          )
        return known
      cls._CONFIGS.setdefault(config.name, config)
    return config

  @classmethod
  def prepare(
      cls, config: str | NamedConfig | None = None, data_dir: str | None = None, **params
  ) -> tfds.core.DatasetBuilder:
    """Prepares the data set as array_record (no-op if already prepared) and returns its builder.

    `data_dir` defaults to TFDS's (~/tensorflow_datasets).
    """
    builder = cls(config=config, data_dir=data_dir, **params)
    builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(**_DOWNLOAD_CONFIG),
    )
    return builder


def split_identities(builder: tfds.core.DatasetBuilder) -> dict[str, list[int]]:
  """Identity groups stored with the prepared data (owner_train/owner_test/attacker)."""
  groups = builder.info.metadata['splits']
  return {k: [int(i) for i in groups[k]] for k in ('owner_train', 'owner_test', 'attacker')}
