"""`bottleneck`: a variational information bottleneck on the cut features (Alemi et al., "Deep
Variational Information Bottleneck", ICLR 2017).

A device-side layer maps the cut features x of one image, in units of their root mean square
(x' = x / rms(x)), to a mean and a log-variance per feature (a 1x1 convolution over the channels:
mu = x' W_mu + b_mu, log var = x' W_v + b_v) and uploads one sample z = rms(x) (mu + sigma eps),
eps ~ N(0, I) drawn on the device for every upload (in evaluation from the key the feature
extraction fixes per split and batch, as for learned noise, so a row's noise is the same on every
extraction). The loss term is `beta * KL(N(mu, sigma^2) || N(0, I))`, summed over the features
(nats per image) and averaged over the batch: the primary loss keeps what the task needs, the KL
charges for every other nat the upload carries, identity included.

Why in units of rms(x): the KL against a fixed N(0, I) depends on the features' scale, which the
extractor chooses (the LFW `none` run's cut features have an rms of 0.02): in absolute units the
noise would start out drowning the features or the prior would be meaningless. Scaling the sample
back by rms(x) is a KL against N(0, rms(x)^2 I) in absolute units (the KL is invariant under
scaling both), keeps the head's input on the scale it was trained on, and stops the extractor
from escaping the noise by growing its features. What it leaves uncharged: the one number rms(x)
per image.

mu starts as the identity (a run fine-tuned from `none` starts from its features plus noise of
`exp(init_logvar / 2)` times their rms) and the log-variance at `init_logvar` everywhere. The
layer ships with the exported extractor, which then takes a key.
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
  """`config.defence.bottleneck`."""

  beta: float = 1e-4  # weight of the KL (nats per image) in the loss
  init_logvar: float = -4.0  # the log-variance every feature starts with
  lr: float = 3e-3  # Adam rate of the layer's parameters
  strength: str = 'beta'
  strengths: tuple = (1e-5, 1e-4, 1e-3)


def gaussian_kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, 1)) summed over all but the first axis: [N] nats."""
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  per_feature = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
  return per_feature.reshape(per_feature.shape[0], -1).sum(axis=1)


class Bottleneck(nnx.Module):
  """x -> mu + exp(logvar / 2) * eps, (mu, logvar) a 1x1 map of x's last axis; takes `rng`."""

  samples = True

  def __init__(self, channels: int, init_logvar: float):
    self.mean_kernel = nnx.Param(jnp.eye(channels, dtype=jnp.float32))
    self.mean_bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
    self.logvar_kernel = nnx.Param(jnp.zeros((channels, channels), jnp.float32))
    self.logvar_bias = nnx.Param(jnp.full((channels,), init_logvar, jnp.float32))

  def moments(self, x):
    """(rms of each image's features [N, 1, ...], mean, log-variance of q in rms units)."""
    x = x.astype(jnp.float32)
    axes = tuple(range(1, x.ndim))
    rms = jnp.sqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + 1e-12)
    unit = x / rms
    mean = unit @ self.mean_kernel[...] + self.mean_bias[...]
    return rms, mean, unit @ self.logvar_kernel[...] + self.logvar_bias[...]

  def report(self, x):
    _, mean, logvar = self.moments(x)
    return {'kl': gaussian_kl(mean, logvar)}

  def __call__(self, x, *, rng=None, train: bool = False):
    if rng is None:
      raise ValueError('the extractor samples a bottleneck: call it with rng=')
    rms, mean, logvar = self.moments(x)
    eps = jax.random.normal(rng, mean.shape, jnp.float32)
    return (rms * (mean + jnp.exp(0.5 * logvar) * eps)).astype(x.dtype)


LAYER = 'defence_bottleneck'


class VariationalBottleneck(Defence):
  name = 'bottleneck'
  strength = 'beta'

  @classmethod
  def check_config(cls, cfg):
    if not (math.isfinite(cfg.beta) and cfg.beta > 0):
      raise ValueError(f'defence.bottleneck.beta must be a finite number > 0, got {cfg.beta}')
    if not math.isfinite(cfg.init_logvar):
      raise ValueError(f'defence.bottleneck.init_logvar must be finite, got {cfg.init_logvar}')
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
      raise ValueError(f'defence.bottleneck.lr must be a finite number > 0, got {cfg.lr}')

  def device_layers(self, rngs):
    channels = self.context.feature_shape[-1]
    return [(LAYER, Bottleneck(channels, self.cfg.init_logvar))]

  def device_lr(self):
    return self.cfg.lr

  def layer_loss(self, state, reports, batch):
    kl = jnp.mean(reports[LAYER]['kl'])
    return self.cfg.beta * kl, {'kl': kl}

  def device_cost(self):
    c = self.context.feature_shape[-1]
    d = math.prod(self.context.feature_shape)
    # rms (2 per feature), two 1x1 maps (2 x C multiply-adds per feature each), exp, normal draw
    # (counted as 2), the sample and its scaling (3).
    return {'params': 2 * c * (c + 1), 'flops': d * (4 * c + 8)}


DEFENCE = VariationalBottleneck
