"""Utility of a cloud head adapted to the deployed transform: at a setting with a PCA or noise, the
cloud knows what the device does to its features, so it can fine-tune its head on what it receives.

A copy of the run's trained head is fine-tuned on the owner's training uploads at this setting
(the train split, transformed and noised as the device would; never the attacker's splits), mapped
back to the cut's shape through the PCA as the head's input is everywhere else (the head takes
inverse-PCA reconstructions; fine-tuning the trained head keeps what it learned, where a fresh
head would learn the layers after the cut again from the owner's photos alone). Early stopping on
a validation part carved from the train split (privjax.attacks.transfer.fit_module, without its
per-feature standardisation, which the trained head was not trained with). Reported: the primary
accuracy on the test split's uploads, role 'utility', beside the `head` evaluator's unadapted
head. The untransformed, noiseless setting is the one the head was trained for: nothing to adapt.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flax import nnx

from privjax.attacks.transfer import fit_module
from privjax.errors import EvalError
from privjax.evaluate import shared

WHERE = 'each'


@dataclasses.dataclass(frozen=True)
class Settings:
  lr: float = 1e-4  # AdamW rate of the fine-tuning
  weight_decay: float = 0.0  # towards 0, not towards the trained head: none by default
  batch_size: int = 128
  max_epochs: int = 20
  patience: int = 3  # epochs without a better validation accuracy before stopping
  val_fraction: float = 0.2  # of the owner's train split, for early stopping


def adapted_head(head, x, y, settings, *, seed: int = 0):
  """`fit_module`'s result for a copy of `head` fine-tuned on (x, y); y must be the head's own
  classes 0..C-1 (its output units), each present."""
  classes = np.unique(y)
  num_outputs = head(np.zeros((1,) + x.shape[1:], np.float32)).shape[-1]
  if not np.array_equal(classes, np.arange(num_outputs)):
    raise EvalError(
        f'adapted_head: the train split has classes {classes.tolist()[:10]}, the head '
        f'{num_outputs} outputs; every class 0..{num_outputs - 1} must be present'
    )
  return fit_module(
      lambda num_classes, rngs: nnx.clone(head),
      x,
      y,
      lr=settings.lr,
      weight_decay=settings.weight_decay,
      batch_size=settings.batch_size,
      max_epochs=settings.max_epochs,
      patience=settings.patience,
      val_fraction=settings.val_fraction,
      seed=seed,
      standardize=False,
      family='adapted_head',
  )


def run(ctx, setting, settings) -> dict:
  if setting.pca is None and not setting.noise_variance:
    return {}
  y_train = ctx.labels(ctx.train_split, ctx.primary)
  head = adapted_head(
      ctx.run.model.head,
      setting.cut_shaped(ctx.train_split),
      y_train,
      settings,
      seed=ctx.config.seed,
  )
  labels = ctx.labels(ctx.test_split, ctx.primary)
  predicted = head.predict(setting.cut_shaped(ctx.test_split))
  correct = float(np.mean(predicted == labels))
  ctx.detail(epochs=head.info['epochs'], best_epoch=head.info['best_epoch'])
  return {
      'accuracy': shared.accuracy(
          correct,
          len(labels),
          label=f'{ctx.primary} accuracy, cloud head adapted to the transform',
          role='utility',
      )
  }
