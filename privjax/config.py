"""Validation of an experiment config (an ml_collections.ConfigDict) before anything is built or written.

What lives here: `validate(config)`, which raises `ConfigError` with one actionable line; the table
it checks every key against (`KEYS`: a `Choice` of values or a `Range` of numbers per key, and
`UNCHECKED`: the keys others check, with who), and the keys that may change when a run is resumed.

Must not import jax, privjax.data or privjax.train, and privjax.models only when validating:
importing this module loads no jax (the commands import it before `--help` is answered), while
validation asks the models which architectures and cuts exist (and each defence's own check loads
that defence's module).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import ml_collections

from privjax import defences
from privjax.errors import ConfigError, DefenceError


def config_module(path: str):
  """The config file at `path` as a module: a file path, or `configs/...` for the configs installed
  with the package when no such file is here (privjax.config_args.resolve, which has no jax)."""
  from privjax import config_args

  return config_args.config_module(path)


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
    # Checked on their own (privjax.data.pipeline.check_run_data): a different data set is refused,
    # in one line naming both digests, unless dataset.allow_new_data is set for that resumption.
    'dataset.digest',
    'dataset.allow_new_data',
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


def _architectures() -> tuple[str, ...]:
  # Here, not at the top: the architectures are defined with their jax layers.
  from privjax.models import vgg

  return tuple(sorted(vgg.ARCHITECTURES))


@dataclasses.dataclass(frozen=True)
class Choice:
  """An enumerated key: one of `values`, or of what `values()` returns (the owner's list)."""

  values: tuple | Callable[[], tuple]

  def allowed(self) -> tuple:
    return tuple(self.values() if callable(self.values) else self.values)

  def check(self, key: str, value) -> None:
    allowed = self.allowed()
    # By type too: 1 is not True, and a restored config's 'True' is not True either.
    if not any(type(value) is type(v) and value == v for v in allowed):
      shown = ', '.join(repr(v) if v == '' else str(v) for v in allowed)
      raise ConfigError(f'{key}={value!r} is not valid; choose one of: {shown}')


@dataclasses.dataclass(frozen=True)
class Range:
  """A finite number in an interval (an int with `integer`); with `each`, a tuple of them."""

  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  integer: bool = False
  each: bool = False

  def text(self) -> str:
    noun = ('integers' if self.integer else 'finite numbers') if self.each else None
    noun = noun or ('an integer' if self.integer else 'a finite number')
    if self.low is not None and self.high is not None:
      left, right = '(' if self.low_open else '[', ')' if self.high_open else ']'
      return f'{noun} in {left}{self.low:g}, {self.high:g}{right}'
    if self.low is not None:
      return f'{noun} {">" if self.low_open else ">="} {self.low:g}'
    if self.high is not None:
      return f'{noun} {"<" if self.high_open else "<="} {self.high:g}'
    return noun

  def contains(self, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
      return False
    if not math.isfinite(value):
      return False
    if self.low is not None and (value <= self.low if self.low_open else value < self.low):
      return False
    return self.high is None or (value < self.high if self.high_open else value <= self.high)

  def check(self, key: str, value) -> None:
    if self.each:
      ok = isinstance(value, (tuple, list)) and all(map(self.contains, value))
    else:
      ok = self.contains(value)
    if not ok:
      raise ConfigError(f'{key} must be {self.text()}, got {value!r}')


DTYPES = ('float32', 'bfloat16')
CHANNEL_ORDERS = ('RGB', 'BGR')
SCHEDULES = ('constant', 'cosine')  # privjax.train.step.learning_rate
_BOOL = Choice((False, True))
_POSITIVE_INT = Range(1, integer=True)

# Every key `validate` checks on its own, with what it allows; the cross-key checks follow in
# `validate`. tests/test_config.py refuses a bogus, out-of-range, infinite or NaN value for each, and
# fails for a key of a training config that is in neither KEYS nor UNCHECKED.
KEYS: dict[str, Choice | Range] = {
    'seed': Range(0, integer=True),  # numpy seeds the batches with it: no negative seed
    'dataset.allow_new_data': _BOOL,
    'model.arch': Choice(_architectures),
    'model.image_size': Range(8, integer=True),
    'model.dtype': Choice(DTYPES),
    'input.mean': Range(0.0, 1.0, each=True),  # pixel units in [0, 1]
    'input.std': Range(0.0, low_open=True, each=True),
    'input.channel_order': Choice(CHANNEL_ORDERS),
    'input.flip': _BOOL,
    'input.resize': _BOOL,
    'input.center_crop': Range(0.0, 1.0, low_open=True),
    'input.random_crop': Range(0.0, 1.0, low_open=True),
    'batch_size': _POSITIVE_INT,
    'eval_batch_size': _POSITIVE_INT,
    'data_threads': _POSITIVE_INT,
    'data_workers': Range(0, integer=True),
    'optimizer.lr': Range(0.0, low_open=True),
    'optimizer.head_lr_mult': Range(0.0),
    'optimizer.b1': Range(0.0, 1.0, high_open=True),
    'optimizer.b2': Range(0.0, 1.0, high_open=True),
    'optimizer.schedule': Choice(SCHEDULES),
    'optimizer.warmup_steps': Range(0, integer=True),
    'optimizer.decay_steps': Range(0, integer=True),
    'optimizer.weight_decay': Range(0.0),
    'defence.calibration_batches': _POSITIVE_INT,
    'total_steps': _POSITIVE_INT,
    'log_every': _POSITIVE_INT,
    'eval_every': _POSITIVE_INT,
    'checkpoint_every': _POSITIVE_INT,
    'keep_checkpoints': _POSITIVE_INT,
    'progress': _BOOL,
    'distributed': _BOOL,
}
# Keys of the training configs that KEYS leaves out, and who checks them instead. A key whose first
# parts are listed here (dataset.builder_kwargs) is covered with all below it; the sections
# defence.<name> are their defences' (privjax.defences.check_config).
UNCHECKED = {
    'dataset.name': 'a data set builder: opening it names the valid ones',
    'dataset.config': "the builder's config: opening the data set checks it",
    'dataset.data_dir': 'a folder (TFDS creates it)',
    'dataset.manual_dir': 'the source files, checked by the builder when it prepares the data',
    'dataset.builder_kwargs': "the builder's parameters, checked by its config class",
    'dataset.primary': 'a label of the data set, checked when it is opened',
    'dataset.secret': 'a label of the data set, checked when it is opened',
    'dataset.train_split': 'a split of the data set, checked when it is opened',
    'dataset.test_split': 'a split of the data set, checked when it is opened',
    'model.cut': "a layer of model.arch, checked against the architecture's below",
    'model.pretrained': 'a weight file, checked by privjax.models.pretrained.check_config',
    'defence.name': 'defences joined by +, checked by privjax.defences.check_config',
    'init_from': "another run's workdir, restored before anything is written",
}


def _lookup(config, key: str):
  """The value of the dotted `key`, or `_MISSING` when a part of it is absent."""
  node = config
  for part in key.split('.'):
    if part not in node:
      return _MISSING
    node = node[part]
  return node


_MISSING = object()


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError, in one line naming the key and what it allows, for a config that cannot
  work: every key of KEYS (a key the config lacks is not checked), then what keys say together."""
  try:
    defences.check_config(config.defence)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  for key, allowed in KEYS.items():
    value = _lookup(config, key)
    if value is not _MISSING:
      allowed.check(key, value)
  from privjax.models import vgg

  arch = vgg.get_architecture(config.model.arch)
  try:
    vgg.check_cut(arch, config.model.cut)
  except ValueError as e:
    raise ConfigError(f'model: {e}') from None
  if config.model.image_size != arch.image_size:
    raise ConfigError(
        f'model.image_size={config.model.image_size} but {arch.name} takes '
        f'{arch.image_size}x{arch.image_size} images'
    )
  for key in ('mean', 'std'):
    if len(config.input[key]) != 3:
      raise ConfigError(
          f'input.{key} must have 3 values (one per channel), got {config.input[key]}'
      )
  opt = config.optimizer
  if opt.get('schedule') == 'cosine' and opt.decay_steps <= opt.warmup_steps:
    raise ConfigError(
        "optimizer.schedule='cosine' needs optimizer.decay_steps (the schedule's length, warm-up "
        f'included; usually total_steps) > warmup_steps={opt.warmup_steps}, got {opt.decay_steps}'
    )
  if opt.get('schedule') == 'constant' and opt.get('warmup_steps', 0):
    raise ConfigError(
        f'optimizer.warmup_steps={opt.warmup_steps} has no effect with '
        "optimizer.schedule='constant'; set schedule='cosine' (and decay_steps) or warmup_steps=0"
    )
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
