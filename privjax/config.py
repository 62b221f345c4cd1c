"""Validation of an experiment config (an ml_collections.ConfigDict) before anything is built or written.

What lives here: `validate(config)`, which raises `ConfigError` with one actionable line, and the keys
that may change when a run is resumed. Must not import jax, models or data: it only reads the config.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from privjax.models import vgg


def config_module(path: str):
  """The config file at `path` as a module: config files are loaded by path, not imported."""
  name = 'privjax_config_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key and the valid choices."""


MODES = ('simple', 'siamese')
MARGIN_MODES = ('fixed', 'calibrated')
DTYPES = ('float32', 'bfloat16')
CHANNEL_ORDERS = ('RGB', 'BGR')

# Keys that may differ between a run and its resumption (schedule, logging, bookkeeping);
# any other difference means the workdir holds a different experiment.
RESUMABLE_KEYS = (
    'total_steps',
    'log_every',
    'eval_every',
    'checkpoint_every',
    'keep_checkpoints',
    'progress',
    'data_threads',
    'dataset.data_dir',
    'distributed',
)


def _choice(value, valid, key):
  if value not in valid:
    raise ConfigError(f'{key}={value!r} is not valid; choose one of: {", ".join(valid)}')


def validate(config: ml_collections.ConfigDict) -> None:
  _choice(config.mode, MODES, 'mode')
  try:
    arch = vgg.get_architecture(config.model.arch)
    vgg.check_cut(arch, config.model.cut)
  except ValueError as e:
    raise ConfigError(f'model: {e}') from None
  _choice(config.model.dtype, DTYPES, 'model.dtype')
  if config.model.image_size != arch.image_size:
    raise ConfigError(
        f'model.image_size={config.model.image_size} but {arch.name} takes '
        f'{arch.image_size}x{arch.image_size} images'
    )
  _choice(config.input.channel_order, CHANNEL_ORDERS, 'input.channel_order')
  for key in ('mean', 'std'):
    if len(config.input[key]) != 3:
      raise ConfigError(
          f'input.{key} must have 3 values (one per channel), got {config.input[key]}'
      )
  if min(config.input.std) <= 0:
    raise ConfigError(f'input.std must be positive, got {config.input.std}')
  if not 0 < config.input.center_crop <= 1:
    raise ConfigError(f'input.center_crop must be in (0, 1], got {config.input.center_crop}')
  _choice(config.contrastive.margin_mode, MARGIN_MODES, 'contrastive.margin_mode')
  for key in (
      'batch_size',
      'total_steps',
      'log_every',
      'eval_every',
      'checkpoint_every',
      'keep_checkpoints',
      'eval_batch_size',
  ):
    if config[key] <= 0:
      raise ConfigError(f'{key} must be positive, got {config[key]}')
  if config.optimizer.lr <= 0:
    raise ConfigError(f'optimizer.lr must be positive, got {config.optimizer.lr}')
  if config.contrastive.weight < 0 or config.contrastive.margin <= 0:
    raise ConfigError('contrastive.weight must be >= 0 and contrastive.margin > 0')
  if config.dataset.primary == config.dataset.secret:
    raise ConfigError(f'dataset.primary and dataset.secret are both {config.dataset.primary!r}')


def flatten(config) -> dict:
  """{'a.b': value} for every leaf, lists as lists, for comparison and JSON."""
  d = config.to_dict() if hasattr(config, 'to_dict') else config
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update({f'{k}.{kk}': vv for kk, vv in flatten(v).items()})
    else:
      out[k] = list(v) if isinstance(v, tuple) else v
  return out


def incompatible_keys(saved: dict, new: dict) -> list[tuple[str, object, object]]:
  """(key, saved value, new value) for every difference outside RESUMABLE_KEYS."""
  a, b = flatten(saved), flatten(new)
  return [
      (k, a.get(k, '<missing>'), b.get(k, '<missing>'))
      for k in sorted(set(a) | set(b))
      if k not in RESUMABLE_KEYS and a.get(k, '<missing>') != b.get(k, '<missing>')
  ]
