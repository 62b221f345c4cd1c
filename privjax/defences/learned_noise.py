"""`learned_noise`: trainable per-feature noise added on the device (Mireshghallah et al., Shredder,
ASPLOS 2020).

A layer after the cut adds `sigma * rms(z) * eps` to the features z, eps ~ N(0, 1) drawn afresh for
every image, `sigma = exp(log_sigma)` one trainable scale per feature and `rms(z)` the root mean
square of that image's features. Scaling by `rms(z)` makes the noise relative: the extractor cannot
drown it by making its features larger. The loss term `-weight * mean(log_sigma)` rewards noise,
the primary loss pays for it, so the scales grow where the task does not need the feature.

The layer is part of the extractor's parameters: it ships with the exported extractor (which then
takes a key), and every evaluation sees noisy features, before its own PCA and noise.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from privjax.defences.base import Defence


@dataclasses.dataclass(frozen=True)
class Settings:
  """`config.defence.learned_noise`."""

  weight: float = 0.1
  init_scale: float = 0.1  # initial noise std, relative to the features' rms
  lr: float = 1e-2  # Adam rate of the noise scales
  strength: str = 'weight'
  strengths: tuple = (0.03, 0.1, 0.3)


class LearnedNoise(nnx.Module):
  """z + exp(log_sigma) * rms(z) * eps, per example; needs `rng` whenever it is called."""

  samples = True

  def __init__(self, feature_shape, init_scale: float):
    self.log_sigma = nnx.Param(jnp.full(feature_shape, math.log(init_scale), jnp.float32))

  def __call__(self, z, *, rng=None, train: bool = False):
    if rng is None:
      raise ValueError('the extractor adds learned noise: call it with rng=')
    z32 = z.astype(jnp.float32)
    axes = tuple(range(1, z.ndim))
    rms = jnp.sqrt(jnp.mean(jnp.square(z32), axis=axes, keepdims=True) + 1e-12)
    eps = jax.random.normal(rng, z.shape, jnp.float32)
    return (z32 + jnp.exp(self.log_sigma[...]) * rms * eps).astype(z.dtype)


LAYER = 'defence_noise'


class LearnedNoiseDefence(Defence):
  name = 'learned_noise'
  strength = 'weight'

  def device_layers(self, rngs):
    return [(LAYER, LearnedNoise(self.context.feature_shape, self.cfg.init_scale))]

  def device_lr(self):
    return self.cfg.lr

  def loss(self, state, features, batch, rng, params):
    log_sigma = params['extractor'][LAYER]['log_sigma']
    mean_log = jnp.mean(log_sigma)
    return -self.cfg.weight * mean_log, {'noise_scale': jnp.exp(mean_log)}

  def device_cost(self):
    d = math.prod(self.context.feature_shape)
    # Per feature: square, sum (rms), normal draw (~ a few ops, counted as 2), multiply twice, add.
    return {'params': d, 'flops': 6 * d}


DEFENCE = LearnedNoiseDefence
