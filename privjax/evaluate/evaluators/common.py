"""What every evaluator sees (`Context`, `Setting`) and how evaluators are found by name (`load`).

See the package docstring for the evaluator interface. Evaluators must not import
privjax.train.loop (evaluation never updates the extractor) or privjax.report (they return results;
the report renders them).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import types
from typing import Any, Callable

import numpy as np

from privjax.errors import EvalError
from privjax.evaluate import features as features_lib

SETTINGS = ('each', 'baseline', 'once')
PACKAGE = 'privjax.evaluate.evaluators'


def log(msg, *args):
  logging.info(msg, *args)
  print(msg % args if args else msg, flush=True)


@dataclasses.dataclass
class Setting:
  """One (transform x noise) setting of the sweep: what the cloud receives from every split."""

  transform: str
  noise_variance: float
  pca: Any  # the fitted transforms.PCA, or None for 'none'
  clean: dict[str, np.ndarray]  # transformed, noiseless features per split
  noisy: dict[str, np.ndarray]  # what is uploaded: transformed, then noised
  baseline: bool  # the untransformed noiseless setting (else the first)

  def cut_shaped(self, split: str) -> np.ndarray:
    """The uploaded features of `split` mapped back to the cut's shape (the transfer attacker's
    input: it re-trains the layers after the cut)."""
    z = self.noisy[split]
    return z if self.pca is None else np.asarray(self.pca.inverse(z), np.float32)


@dataclasses.dataclass
class Context:
  """The run under evaluation and what evaluators share."""

  run: Any  # features.Run
  config: Any  # the eval config
  secrets: list[str]
  data: dict[str, dict]  # split -> features.extract's record (noiseless cut features, labels)
  out_dir: str
  # attack_secret(families, train, test, y_train, y_test, **kw): protocol.attack_secret with the
  # eval config's seed, overrides and memo switch filled in.
  attack: Callable[..., dict]
  data_dir: str | None = None
  store: dict = dataclasses.field(default_factory=dict)  # evaluators' outputs for later ones
  _images: dict = dataclasses.field(default_factory=dict)

  @property
  def primary(self) -> str:
    return self.run.config.dataset.primary

  @property
  def train_split(self) -> str:
    return self.run.config.dataset.train_split

  @property
  def test_split(self) -> str:
    return self.run.config.dataset.test_split

  def images(self, split: str) -> np.ndarray:
    """All images of `split` as float32 [N, S, S, 3] in [0, 1] (read once per evaluation)."""
    if split not in self._images:
      raw = features_lib.split_images(self.run.builder, self.run.config, split)
      self._images[split] = raw.astype(np.float32) / 255.0
    return self._images[split]

  def labels(self, split: str, name: str) -> np.ndarray:
    return self.data[split][name]

  def add_reconstructions(self, method: str, indices, images) -> None:
    """Record a reconstruction method's images of attacker-test rows `indices` (for reidentify)."""
    self.store.setdefault('reconstructions', {})[method] = (np.asarray(indices), images)


def section(eval_config, name: str):
  """The evaluator's own settings: `eval_config.<name>` (None when the config has no such key)."""
  return eval_config.get(name) if hasattr(eval_config, 'get') else None


def load(name: str) -> types.ModuleType:
  """The evaluator module `name` (see the package docstring); EvalError if there is none."""
  module_name = name if '.' in name else f'{PACKAGE}.{name}'
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is None or not module_name.startswith(e.name):
      raise
    raise EvalError(f'unknown evaluator {name!r}: no module {module_name}') from None
  if not callable(getattr(module, 'run', None)):
    raise EvalError(f'evaluator {name!r} ({module_name}) has no run(ctx, setting)')
  return module


def short_name(name: str) -> str:
  return name.rsplit('.', 1)[-1]


def settings_of(module: types.ModuleType, eval_config, name: str) -> str:
  """Where the evaluator runs: its section's `settings`, else the module's SETTINGS."""
  sec = section(eval_config, short_name(name))
  where = getattr(module, 'SETTINGS', 'once')
  if sec is not None and hasattr(sec, 'get') and sec.get('settings') is not None:
    where = sec.get('settings')
  if where not in SETTINGS:
    raise EvalError(f'evaluator {name!r}: settings {where!r} is not one of {", ".join(SETTINGS)}')
  return where


def is_enabled(module: types.ModuleType, eval_config, name: str) -> bool:
  if hasattr(module, 'enabled'):
    return bool(module.enabled(eval_config))
  sec = section(eval_config, short_name(name))
  if sec is not None and hasattr(sec, 'get'):
    return bool(sec.get('enabled', True))
  return True
