"""What every evaluator sees (`Context`), how evaluators are found by name (`load`), and where their
settings come from (`settings_for`, `config_sections`).

See the package docstring for the evaluator interface. Evaluators must not import
privjax.train.loop (evaluation never updates the extractor), privjax.report (they return metrics;
the report renders them) or privjax.evaluate.protocol (which runs them). This module imports no
jax at module level: an eval config builds its sections from it, and naming a config stays light.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import types
from typing import Any, Callable

import ml_collections
import numpy as np

from privjax import paths, plugins
from privjax.errors import EvalError

WHERE = ('each', 'baseline', 'once')
PACKAGE = 'privjax.evaluate.evaluators'
_NOT_EVALUATORS = ('common',)


def log(msg, *args):
  logging.info(msg, *args)
  print(msg % args if args else msg, flush=True)


@dataclasses.dataclass
class Context:
  """The run under evaluation, its features and what evaluators share."""

  run: Any  # features.Run
  config: Any  # the eval config
  secrets: list[str]
  features: Any  # sources.Features: every split's frozen cut features and labels
  out_dir: str
  # attack(families, train, test, y_train, y_test, **kw): shared.attack_secret with the eval
  # config's seed, overrides and memo switch filled in.
  attack: Callable[..., dict]
  data_dir: str | None = None
  store: dict = dataclasses.field(default_factory=dict)  # evaluators' outputs for later ones
  details: dict = dataclasses.field(default_factory=dict)  # report['details']
  written_images: dict = dataclasses.field(default_factory=dict)  # report['images']
  evaluator: str = ''  # which evaluator runs now, and where (set by the orchestrator)
  where: str = ''
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
      from privjax.evaluate import features as features_lib

      raw = features_lib.split_images(self.run.builder, self.run.config, split)
      self._images[split] = raw.astype(np.float32) / 255.0
    return self._images[split]

  def labels(self, split: str, name: str) -> np.ndarray:
    return self.features.splits[split].labels[name]

  def split(self, split: str):
    """The split's frozen, noiseless cut features (sources.Split)."""
    return self.features.splits[split]

  def add_reconstructions(self, method: str, indices, images) -> None:
    """Record a reconstruction method's images of attacker-test rows `indices` at the current
    setting (for the evaluators after it that judge reconstructions, such as re-identification)."""
    self.store.setdefault(('reconstructions', self.where), {})[method] = (
        np.asarray(indices),
        images,
    )

  def reconstructions(self) -> dict:
    """{method: (attacker-test rows, images)} of the reconstructions made at the current setting."""
    return self.store.get(('reconstructions', self.where), {})

  def detail(self, **values) -> None:
    """Keep `values` in report['details'][evaluator][setting] (report.json only: what a reader
    may want besides the metrics, such as the candidates an attacker chose among)."""
    self.details.setdefault(self.evaluator, {}).setdefault(self.where, {}).update(values)

  def image_path(self, filename: str, title: str) -> str:
    """Where an evaluator writes the picture `filename` (in the report folder, which may be a
    URI); the report lists it under `title`."""
    paths.as_path(self.out_dir).mkdir(parents=True, exist_ok=True)
    self.written_images[f'{self.evaluator}: {title}'] = filename
    return paths.join(self.out_dir, filename)


# ---------------------------------------------------------------------------------------------
# Finding evaluators and their settings.


def available() -> list[str]:
  """The built-in evaluators: every module of this package but `common`."""
  from privjax.evaluate import evaluators

  return sorted(
      m.name for m in pkgutil.iter_modules(evaluators.__path__) if m.name not in _NOT_EVALUATORS
  )


def load(name: str) -> types.ModuleType:
  """The evaluator module `name`: a built-in one, or any importable module by its dotted name (a
  project's own evaluator outside privjax). EvalError if there is none."""
  module_name = name if '.' in name else f'{PACKAGE}.{name}'
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is None or not module_name.startswith(e.name):
      raise
    raise EvalError(
        f'unknown evaluator {name!r}: no module {module_name}; built in: {", ".join(available())}'
    ) from None
  if not callable(getattr(module, 'run', None)):
    raise EvalError(f'evaluator {name!r} ({module_name}) has no run(ctx, setting, settings)')
  return module


def short_name(name: str) -> str:
  return name.rsplit('.', 1)[-1]


@dataclasses.dataclass(frozen=True)
class _NoSettings:
  pass


def settings_class(module: types.ModuleType) -> type:
  return getattr(module, 'Settings', _NoSettings)


def declared_defaults(name: str) -> dict:
  """The defaults of evaluator `name`'s `Settings`, read from its source without importing it (an
  eval config names evaluators before anything heavy is loaded; tests check that they are the
  dataclass's own)."""
  return plugins.declared_defaults(plugins.module_path(PACKAGE, name))


def config_sections() -> ml_collections.ConfigDict:
  """Every built-in evaluator's settings with their defaults, one section per evaluator: what an
  eval config starts from (it then chooses evaluators and overrides values)."""
  return plugins.config_sections(PACKAGE, available())


def settings_for(module: types.ModuleType, eval_config, name: str):
  """The evaluator's settings: its `Settings` defaults, overridden by the config's section."""
  cls = settings_class(module)
  section = eval_config.get(short_name(name)) if hasattr(eval_config, 'get') else None
  values = section.to_dict() if hasattr(section, 'to_dict') else {}
  try:
    return cls(**values)
  except TypeError as e:
    known = ', '.join(f.name for f in dataclasses.fields(cls)) or 'none'
    raise EvalError(f'evaluator {name!r}: {e}; its settings: {known}') from None


def where(module: types.ModuleType, settings):
  """Where the evaluator runs: its settings' `where`, else the module's WHERE. 'each', 'baseline',
  'once', or a tuple of setting names ('pca:32/0.1': transform / noise variance)."""
  at = getattr(settings, 'where', None) or getattr(module, 'WHERE', 'once')
  if isinstance(at, (tuple, list)):
    return tuple(str(a) for a in at)
  if at not in WHERE:
    raise EvalError(
        f'evaluator {module.__name__}: where={at!r} is not one of {", ".join(WHERE)} or a tuple '
        "of setting names such as ('none/0', 'pca:32/0.1')"
    )
  return at


def runs_at(where, setting) -> bool:
  """Whether an evaluator with `where` runs at `setting` (a sources.Setting)."""
  if isinstance(where, tuple):
    return setting.name in where
  return where == 'each' or (where == 'baseline' and setting.baseline)
