"""What a defence is: the interface every module in `privjax.defences` implements.

A defence changes what the extractor learns. The train step computes the primary task's loss and
adds whatever the defence returns; everything a defence owns lives in its state (a pytree that is
checkpointed with the run) or in device-side layers appended to the extractor (so evaluation and
export restore them with its parameters).

Must not import privjax.train, privjax.data, privjax.attacks or privjax.evaluate: defences are
plain functions of features, labels and their own state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Context:
  """What a defence may know about the run when it is built."""

  feature_shape: tuple[int, ...]  # per-example shape of the cut features
  image_shape: tuple[int, ...]  # per-example input shape (S, S, 3)
  label_classes: tuple[tuple[str, int], ...]  # (label, number of classes) of the data set

  def num_classes(self, label: str) -> int:
    return dict(self.label_classes)[label]


class Defence:
  """The default of every hook is 'does nothing': a defence overrides what it needs.

  Class attributes:
    name:        the name in `config.defence.name` (and of its config section).
    labels:      per-image labels beyond the primary one that the pair batches must carry.
    strength:    the key of its config section that sets how strongly it acts (the frontier's axis).
  """

  name: str = ''
  labels: tuple[str, ...] = ()
  strength: str = ''

  @classmethod
  def check_config(cls, cfg) -> None:
    """Raises ValueError with one line when the config section cannot work."""

  def __init__(self, cfg, context: Context):
    self.cfg = cfg
    self.context = context

  # --- device side -------------------------------------------------------------------------------
  def device_layers(self, rngs) -> list[tuple[str, Any]]:
    """(name, nnx.Module) layers appended to the extractor after the cut; they ship to the device.

    A layer that samples (learned noise) has `samples = True` and is called with `rng=`; a layer
    with a `report(x)` method reports to `layer_loss` during training.
    """
    return []

  def device_lr(self) -> float | None:
    """Adam rate of the device layers' parameters (None: the extractor's rate)."""
    return None

  # --- state, calibration ------------------------------------------------------------------------
  def init_state(self, rng) -> dict:
    """The defence's own state (adversary parameters and optimizer state, a calibrated margin)."""
    return {}

  def calibration_output(self, features, batch):
    """A jnp array computed on a few batches before training (traced); None: no calibration."""
    return None

  def calibrate(self, state: dict, outputs: list) -> dict:
    """The state after calibration, from `calibration_output` of each calibration batch."""
    return state

  # --- training ----------------------------------------------------------------------------------
  def loss(self, state: dict, features, batch: dict, rng, params) -> tuple[Any, dict]:
    """(loss term added to the primary loss, metrics); differentiable in `features`.

    `batch` holds the step's 2B images as one batch: 'image' [2B, S, S, 3] (raw pixels), 'label'
    [2B] (primary), 'same' [B] (pairs are rows 2i, 2i+1) and every label in `labels`. `params`
    are the model's ({'extractor': ..., 'head': ...}): a defence finds its device layers there.
    """
    return jnp.zeros((), jnp.float32), {}

  def layer_loss(self, state: dict, reports: dict, batch: dict) -> tuple[Any, dict]:
    """(loss term, metrics) from what the device layers reported in the training forward pass:
    `reports` is {layer name: layer.report(the layer's input)} for layers with a `report` method
    (a variational layer's mean and log-variance). Added to `loss`'s term."""
    return jnp.zeros((), jnp.float32), {}

  def update(self, state: dict, features, batch: dict, rng) -> tuple[dict, dict]:
    """The defence's own training step (an adversary's), on features it cannot change."""
    return state, {}

  def summary(self, state: dict) -> dict:
    """JSON-able scalars of the state, for reports (for example the margin)."""
    return {}

  def device_cost(self) -> dict:
    """Extra parameters and FLOPs per image the defence adds on the device."""
    return {'params': 0, 'flops': 0}
