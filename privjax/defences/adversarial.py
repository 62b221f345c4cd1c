"""`adversarial`: a proxy identity attacker trained alongside the extractor (Xiao et al. 2020;
Li et al., DeepObfuscator, 2019).

The model owner knows who is in its own training photos, so it trains a proxy attacker: an MLP on
the cut features predicting `label` (default identity) over the owner's training people. Each step
alternates (min-max):
  * the extractor's loss gets `weight * CE(proxy(z), uniform)`: the extractor is pushed to make the
    proxy's prediction uninformative (maximal entropy);
  * the proxy then takes `proxy_steps` Adam steps on `CE(proxy(stop_gradient(z)), identity)`.

Why min-max towards uniform rather than gradient reversal: reversing the gradient maximises the
proxy's cross-entropy, which is unbounded and is "won" by making the proxy confidently wrong, a
relabelling that still separates people; pushing towards the uniform distribution is bounded (its
minimum is log K, reached only when the proxy cannot tell people apart) and cannot be won that way.
The proxy's parameters and Adam state are the defence's state (checkpointed with the run).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from privjax.defences.base import Defence


def _init_mlp(rng, sizes):
  params = []
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    k = jax.random.fold_in(rng, i)
    w = jax.random.normal(k, (fan_in, fan_out), jnp.float32) * math.sqrt(2.0 / fan_in)
    params.append({'w': w, 'b': jnp.zeros((fan_out,), jnp.float32)})
  return params


def mlp_logits(params, z):
  x = z.reshape(z.shape[0], -1).astype(jnp.float32)
  # Standardise per example: the proxy must not be fooled by the extractor rescaling its output.
  x = (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer['w'] + layer['b'])
  return x @ params[-1]['w'] + params[-1]['b']


def confusion_loss(logits):
  """Cross-entropy against the uniform distribution: log K at its minimum (no information)."""
  return -jax.nn.log_softmax(logits.astype(jnp.float32)).mean()


@dataclasses.dataclass(frozen=True)
class Settings:
  """`config.defence.adversarial`."""

  weight: float = 1.0
  label: str = 'identity'  # owner-side label the proxy predicts
  proxy_hidden: int = 256
  proxy_layers: int = 1  # hidden layers of the proxy MLP
  proxy_lr: float = 1e-3
  proxy_steps: int = 1  # proxy Adam steps per training step
  strength: str = 'weight'
  strengths: tuple = (0.3, 1.0, 3.0)


class Adversarial(Defence):
  name = 'adversarial'
  strength = 'weight'

  @property
  def labels(self):
    return (self.cfg.label,)

  def _tx(self):
    return optax.adam(self.cfg.proxy_lr)

  def init_state(self, rng) -> dict:
    dim = math.prod(self.context.feature_shape)
    sizes = [dim] + [self.cfg.proxy_hidden] * self.cfg.proxy_layers
    sizes.append(self.context.num_classes(self.cfg.label))
    params = _init_mlp(rng, sizes)
    return {'proxy': params, 'proxy_opt': self._tx().init(params)}

  def loss(self, state, features, batch, rng, params):
    logits = mlp_logits(state['proxy'], features)
    confusion = confusion_loss(logits)
    # Relative to its minimum, so the logged term reads 0 when the proxy learns nothing.
    excess = confusion - math.log(logits.shape[-1])
    accuracy = (jnp.argmax(logits, -1) == batch[self.cfg.label]).mean()
    return self.cfg.weight * confusion, {'proxy_confusion': excess, 'proxy_accuracy': accuracy}

  def update(self, state, features, batch, rng):
    z, y = jax.lax.stop_gradient(features), batch[self.cfg.label]
    tx = self._tx()

    def proxy_loss(params):
      logits = mlp_logits(params, z)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def one(carry, _):
      params, opt = carry
      loss, grads = jax.value_and_grad(proxy_loss)(params)
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), loss

    (params, opt), losses = jax.lax.scan(
        one, (state['proxy'], state['proxy_opt']), None, length=self.cfg.proxy_steps
    )
    return {'proxy': params, 'proxy_opt': opt}, {'proxy_ce': losses[-1]}


DEFENCE = Adversarial
