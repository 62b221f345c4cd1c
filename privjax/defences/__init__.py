"""Defences as plug-ins: `config.defence.name` picks them, `+` combines them (`siamese+adversarial`).

A defence is one module of this package that defines `DEFENCE`, a subclass of
`privjax.defences.base.Defence`, plus its config section `config.defence.<name>` (see
configs/default.py). Nothing outside this package names a particular defence: the train step adds
the loss terms of `from_config(...)`, the loop calibrates and checkpoints its state, and the model
builder appends its device-side layers to the extractor.

This module imports no jax at import time (the registry is read by config validation); the defence
modules are imported when built. No module of this package may import privjax.train, privjax.data,
privjax.attacks or privjax.evaluate (see `base`).
"""

from __future__ import annotations

import importlib
import pkgutil

from privjax.errors import DefenceError

_NOT_DEFENCES = {'base', 'combined'}


def names() -> tuple[str, ...]:
  """Every defence of this package, by module name (no module is imported)."""
  found = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_DEFENCES]
  return tuple(sorted(found))


def parse(name: str) -> tuple[str, ...]:
  """'siamese+adversarial' → ('siamese', 'adversarial'); errors in one line."""
  parts = tuple(p.strip() for p in str(name).split('+'))
  valid = names()
  unknown = [p for p in parts if p not in valid]
  if unknown or not parts:
    raise DefenceError(
        f'defence.name={name!r}: unknown defence {", ".join(map(repr, unknown)) or "(empty)"}; '
        f'valid: {", ".join(valid)} (combine with +)'
    )
  if len(set(parts)) != len(parts):
    raise DefenceError(f'defence.name={name!r} names a defence twice')
  if 'none' in parts and len(parts) > 1:
    raise DefenceError(f'defence.name={name!r}: none cannot be combined with another defence')
  return parts


def check_config(defence_cfg) -> None:
  """Each active defence's own checks of its section (one-line DefenceError)."""
  for name in parse(defence_cfg.name):
    if name not in defence_cfg:
      raise DefenceError(
          f'defence {name} has no config section defence.{name}; add it (see configs/default.py)'
      )
    section = defence_cfg[name]
    strength = section.get('strength', '')
    if strength and strength not in section:
      raise DefenceError(f'defence.{name}.strength={strength!r} is not a key of defence.{name}')
    if section.get('weight', 0) < 0:
      raise DefenceError(f'defence.{name}.weight must be >= 0, got {section.weight}')
    defence_class(name).check_config(section)


def defence_class(name: str):
  return importlib.import_module(f'{__name__}.{name}').DEFENCE


def from_config(defence_cfg, context):
  """The `Combined` defence of `config.defence` for a run described by `context`."""
  from privjax.defences.combined import Combined

  parts = parse(defence_cfg.name)
  return Combined([defence_class(p)(defence_cfg[p], context) for p in parts])


def context_for(config, label_classes):
  """The `Context` of a run: its cut's feature shape, image shape and the data set's labels."""
  from privjax import models
  from privjax.defences import base

  arch = models.get_architecture(config.model.arch)
  return base.Context(
      feature_shape=tuple(models.feature_shape(arch, config.model.cut)),
      image_shape=(arch.image_size, arch.image_size, 3),
      label_classes=tuple(sorted(label_classes)),
  )


def model_from_config(config, num_classes: int, context, *, rngs):
  """(SplitModel with the defence's device layers after the cut, the defence)."""
  from privjax import models

  defence = from_config(config.defence, context)
  model = models.model_from_config(
      config, num_classes, rngs=rngs, device_layers=defence.device_layers(rngs)
  )
  return model, defence
