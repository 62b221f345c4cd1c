"""`disco`: learned, input-dependent channel pruning of the cut features against a proxy identity
adversary (Singh et al., "DISCO: Dynamic and Invariant Sensitive Channel Obfuscation for deep
neural networks", CVPR 2021).

A device-side pruner scores the cut's C channels from each image's features (a linear map of the
channels' spatial means; it starts as the identity, so it first keeps the most active channels)
and uploads only the k = round(keep * C) best-scored channels of that image, the others set to 0.
The hard top-k mask is what the head sees in training and what ships to the device; the pruner
learns through a soft mask, `sigmoid(score - threshold)` with the threshold halfway between the
k-th and (k+1)-th score (straight-through: the forward value is the hard mask).

The adversary is the `adversarial` defence's proxy (an MLP predicting `label`, default identity,
over the owner's training people; its parameters and Adam state are this defence's state, and it
takes `proxy_steps` steps on the uploaded features every training step). As in DISCO, the pruner
is the one trained against it: the term `weight * CE(proxy(pruned), uniform)` reaches only the
pruner's parameters (the features entering it are a constant there), so the pruner learns to drop
the channels that tell people apart, while the extractor and head keep training on the primary
task alone.

Simplified from the paper: the pruner is one linear layer on pooled channels (the paper's is a
small CNN), the proxy attacks the identity label rather than reconstructing the image, and the
pruner's adversarial objective is the `adversarial` defence's confusion towards the uniform
distribution instead of the negated proxy loss (bounded; see privjax/defences/adversarial.py).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from privjax.defences import adversarial
from privjax.errors import DefenceError


@dataclasses.dataclass(frozen=True)
class Settings:
  """`config.defence.disco`."""

  keep: float = 0.5  # fraction of the cut's channels each upload keeps
  weight: float = 1.0  # weight of the proxy's confusion in the pruner's loss
  label: str = 'identity'  # owner-side label the proxy predicts
  proxy_hidden: int = 256
  proxy_layers: int = 1  # hidden layers of the proxy MLP
  proxy_lr: float = 1e-3
  proxy_steps: int = 1  # proxy Adam steps per training step
  lr: float = 1e-3  # Adam rate of the pruner
  strength: str = 'keep'
  strengths: tuple = (0.25, 0.5, 0.75)


def channel_mask(scores, k: int):
  """[N, C] mask with exactly k ones per row (the top-k scores), whose gradient is that of
  `sigmoid(scores - threshold)` (straight-through), the threshold between the k-th and (k+1)-th."""
  c = scores.shape[-1]
  top, index = jax.lax.top_k(scores, min(k + 1, c))
  hard = jax.nn.one_hot(index[:, :k], c, dtype=scores.dtype).sum(axis=1)
  threshold = top[:, k - 1] if k == c else 0.5 * (top[:, k - 1] + top[:, k])
  soft = jax.nn.sigmoid(scores - jax.lax.stop_gradient(threshold)[:, None])
  # Parenthesised: soft - soft is exactly 0, so the forward value is exactly the hard mask.
  return hard + (soft - jax.lax.stop_gradient(soft))


class ChannelPruner(nnx.Module):
  """Keeps each image's k best-scored channels (last axis) and zeroes the others."""

  def __init__(self, channels: int, k: int):
    self.k = int(k)
    self.kernel = nnx.Param(jnp.eye(channels, dtype=jnp.float32))
    self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

  def scores(self, x):
    """[N, C] channel scores from the channels' means over the other axes."""
    pooled = x.astype(jnp.float32).reshape(x.shape[0], -1, x.shape[-1]).mean(axis=1)
    return pooled @ self.kernel[...] + self.bias[...]

  def mask(self, x):
    """[N, 1, ..., 1, C]: the mask to multiply x by."""
    m = channel_mask(self.scores(x), self.k)
    return m.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],))

  def report(self, x):
    # The upload as a function of the pruner alone: what its adversarial term differentiates.
    x = jax.lax.stop_gradient(x)
    return {'pruned': x * self.mask(x).astype(x.dtype)}

  def __call__(self, x):
    return x * self.mask(x).astype(x.dtype)


LAYER = 'defence_pruner'


class Disco(adversarial.Adversarial):
  name = 'disco'
  strength = 'keep'

  @classmethod
  def check_config(cls, cfg):
    if not (0.0 < cfg.keep <= 1.0):
      raise ValueError(
          f'defence.disco.keep must be in (0, 1] (fraction of channels kept), got {cfg.keep}'
      )
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
      raise ValueError(f'defence.disco.lr must be a finite number > 0, got {cfg.lr}')

  def __init__(self, cfg, context):
    super().__init__(cfg, context)
    channels = context.feature_shape[-1]
    self.k = round(cfg.keep * channels)
    if self.k < 1:
      raise DefenceError(
          f"defence.disco.keep={cfg.keep} keeps no channel of the cut's {channels}; "
          f'choose keep >= {0.5 / channels:.3g}'
      )

  def device_layers(self, rngs):
    return [(LAYER, ChannelPruner(self.context.feature_shape[-1], self.k))]

  def device_lr(self):
    return self.cfg.lr

  def loss(self, state, features, batch, rng, params):
    return jnp.zeros((), jnp.float32), {}

  def layer_loss(self, state, reports, batch):
    logits = adversarial.mlp_logits(state['proxy'], reports[LAYER]['pruned'])
    confusion = adversarial.confusion_loss(logits)
    accuracy = (jnp.argmax(logits, -1) == batch[self.cfg.label]).mean()
    return self.cfg.weight * confusion, {
        'pruner_confusion': confusion - math.log(logits.shape[-1]),
        'pruner_proxy_accuracy': accuracy,
    }

  def summary(self, state):
    return {'channels_kept': self.k}

  def device_cost(self):
    c = self.context.feature_shape[-1]
    d = math.prod(self.context.feature_shape)
    # Pooling (1 add per feature), the C x C scoring map, top-k (~C log C compares), the mask.
    return {'params': c * (c + 1), 'flops': d + 2 * c * c + c * max(1, math.ceil(math.log2(c))) + d}


DEFENCE = Disco
