"""MLP attacker: a small fully connected classifier on flattened features.

Implemented as a module factory for ``transfer.fit_module`` so there is a
single training loop (AdamW, jitted epochs, early stopping on a val split of
the attacker's own training data).

Must not import ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from privjax.attacks.transfer import ModuleAttacker, fit_module


class MLP(nnx.Module):
  """Flatten -> [Dense -> ReLU -> Dropout] * len(hidden) -> Dense."""

  def __init__(
      self,
      in_features: int,
      hidden: Sequence[int],
      num_classes: int,
      *,
      dropout: float,
      rngs: nnx.Rngs,
  ):
    sizes = [in_features, *hidden]
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    self.drop = nnx.Dropout(dropout, rngs=rngs)
    self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, x):
    x = jnp.reshape(x, (x.shape[0], -1))
    for layer in self.hidden:
      x = self.drop(nnx.relu(layer(x)))
    return self.out(x)


def mlp_factory(feature_shape: Sequence[int], hidden: Sequence[int] = (512,), dropout: float = 0.2):
  in_features = int(np.prod(feature_shape))

  def factory(num_classes: int, rngs: nnx.Rngs) -> MLP:
    return MLP(in_features, tuple(hidden), num_classes, dropout=dropout, rngs=rngs)

  return factory


def fit_mlp(
    x,
    y,
    *,
    hidden: Sequence[int] = (512,),
    dropout: float = 0.2,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    max_epochs: int = 100,
    patience: int = 10,
    val_fraction: float = 0.2,
    standardize: bool = True,
    seed: int = 0,
) -> ModuleAttacker:
  """``standardize=False`` trains on ``x`` as given (inputs the caller already scaled)."""
  x = np.asarray(x)
  return fit_module(
      mlp_factory(x.shape[1:], hidden, dropout),
      x,
      y,
      lr=lr,
      weight_decay=weight_decay,
      batch_size=batch_size,
      max_epochs=max_epochs,
      patience=patience,
      val_fraction=val_fraction,
      seed=seed,
      standardize=standardize,
      family="mlp",
  )
