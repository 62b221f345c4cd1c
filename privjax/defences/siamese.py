"""`siamese`: the paper's contrastive loss on pairs labelled same/different primary class.

Loss term: `weight * contrastive(a, b)` over the step's pairs (Hadsell et al. 2006, as in the paper's
Caffe code; `privjax.objectives.contrastive_from_distances`). The margin is fixed
(`margin_mode='fixed'`, the paper's 10) or calibrated before training to `margin_scale` x the median
distance of different-label pairs under the starting parameters (`'calibrated'`); `normalize`
computes distances between L2-normalised features. The margin is the defence's state.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from privjax import objectives
from privjax.defences.base import Defence


def pair_distances_squared(features, *, normalize: bool):
  """Squared distance of each pair (rows 2i, 2i+1) of one batch of 2B features."""
  f = features.reshape((features.shape[0] // 2, 2, -1))
  return objectives.pair_distances_squared(f[:, 0], f[:, 1], normalize=normalize)


@dataclasses.dataclass(frozen=True)
class Settings:
  """`config.defence.siamese` (configs/default.py's `calibrated` and `normalized` set the mode)."""

  weight: float = 0.01  # lambda, from the paper's code
  margin: float = 10.0  # from the paper's code, in feature-distance units
  margin_mode: str = 'fixed'  # or 'calibrated'
  margin_scale: float = 1.0
  normalize: bool = False
  strength: str = 'weight'
  strengths: tuple = (0.1, 1.0, 10.0)


class Siamese(Defence):
  name = 'siamese'
  strength = 'weight'

  @classmethod
  def check_config(cls, cfg):
    if cfg.margin_mode not in ('fixed', 'calibrated'):
      raise ValueError(
          f'defence.siamese.margin_mode={cfg.margin_mode!r} is not valid; choose fixed or calibrated'
      )
    if cfg.margin <= 0:
      raise ValueError(f'defence.siamese.margin must be > 0, got {cfg.margin}')

  def init_state(self, rng) -> dict:
    return {'margin': np.float32(self.cfg.margin)}

  def calibration_output(self, features, batch):
    if self.cfg.margin_mode != 'calibrated':
      return None
    d = jnp.sqrt(pair_distances_squared(features, normalize=self.cfg.normalize))
    return jnp.stack([d, batch['same'].astype(d.dtype)])

  def calibrate(self, state, outputs):
    if self.cfg.margin_mode != 'calibrated':
      return state
    diffs = np.concatenate([o[0][o[1] == 0] for o in outputs])
    return dict(state, margin=np.float32(self.cfg.margin_scale * np.median(diffs)))

  def loss(self, state, features, batch, rng, params):
    d2 = pair_distances_squared(features, normalize=self.cfg.normalize)
    contrastive = objectives.contrastive_from_distances(d2, batch['same'], state['margin'])
    return self.cfg.weight * contrastive, {'contrastive': contrastive}

  def summary(self, state):
    return {'margin': float(state['margin'])}


DEFENCE = Siamese
