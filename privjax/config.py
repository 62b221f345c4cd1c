"""Validation of an experiment config (an ml_collections.ConfigDict) before anything is built or written.

What lives here: `validate(config)`, which raises `ConfigError` with one actionable line, and the keys
that may change when a run is resumed.

Must not import jax, privjax.data or privjax.train, and privjax.models only inside `validate`:
importing this module loads no jax (the commands import it before `--help` is answered), while
validation asks the models which architectures and cuts exist (and each defence's own check loads
that defence's module).
"""

from __future__ import annotations

import ml_collections

from privjax import defences
from privjax.errors import ConfigError, DefenceError


def config_module(path: str):
  """The config file at `path` as a module: a file path, or `configs/...` for the configs installed
  with the package when no such file is here (privjax.config_args.resolve, which has no jax)."""
  from privjax import config_args

  return config_args.config_module(path)


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
    'data_workers',
    'dataset.data_dir',
    'distributed',
)
# Keys of a defence section that describe the frontier, not the run.
_FRONTIER_KEYS = ('strength', 'strengths')


def _choice(value, valid, key):
  if value not in valid:
    raise ConfigError(f'{key}={value!r} is not valid; choose one of: {", ".join(valid)}')


def active_defences(config) -> tuple[str, ...]:
  try:
    return defences.parse(config.defence.name)
  except DefenceError as e:
    raise ConfigError(str(e)) from None


def validate(config: ml_collections.ConfigDict) -> None:
  try:
    defences.check_config(config.defence)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  # Here, not at the top: the architectures are defined with their jax layers.
  from privjax.models import vgg

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


def _training_keys(config_dict: dict) -> dict:
  """Flattened keys that shape training: inactive defences' sections and frontier keys left out."""
  try:
    active = set(defences.parse(config_dict['defence']['name']))
  except DefenceError:
    active = set()
  out = {}
  for k, v in flatten(config_dict).items():
    parts = k.split('.')
    if parts[0] == 'defence' and len(parts) > 2:
      if parts[1] not in active or parts[2] in _FRONTIER_KEYS:
        continue
    out[k] = v
  return out


def incompatible_keys(saved: dict, new: dict) -> list[tuple[str, object, object]]:
  """(key, saved value, new value) for every difference outside RESUMABLE_KEYS."""
  a, b = _training_keys(saved), _training_keys(new)
  return [
      (k, a.get(k, '<missing>'), b.get(k, '<missing>'))
      for k in sorted(set(a) | set(b))
      if k not in RESUMABLE_KEYS and a.get(k, '<missing>') != b.get(k, '<missing>')
  ]
