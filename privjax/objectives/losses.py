"""Training objectives: primary-task cross-entropy and the Siamese contrastive loss.

What lives here: pure jnp functions of logits, labels and cut features. The contrastive loss follows
Hadsell et al. (2006) as in the paper's Caffe code (`ContrastiveLoss` layer, legacy_version=false):
`0.5 * mean(y * d^2 + (1 - y) * max(0, margin - d)^2)`, with `d` the Euclidean distance between the
flattened cut features of the two branches and `y = 1` when the pair shares the primary label.

Must not import flax, optax or anything from privjax.train: these are plain functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy, computed in float32 whatever the compute dtype."""
  # The operations of optax.softmax_cross_entropy_with_integer_labels, in its order (log-normaliser
  # minus the label's logit), so losses and gradients stay bit-identical to the runs made with it;
  # gathering from jax.nn.log_softmax instead rounds differently.
  logits = logits.astype(jnp.float32)
  label_logits = jnp.take_along_axis(logits, jnp.expand_dims(labels, -1), axis=-1).take(0, axis=-1)
  return (jax.nn.logsumexp(logits, axis=-1) - label_logits).mean()


def pair_distances_squared(features_a, features_b, *, normalize: bool = False):
  """Squared Euclidean distance per pair of flattened features, in float32."""
  a = features_a.reshape(features_a.shape[0], -1).astype(jnp.float32)
  b = features_b.reshape(features_b.shape[0], -1).astype(jnp.float32)
  if normalize:
    a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
  return jnp.sum(jnp.square(a - b), axis=-1)


def contrastive_from_distances(d2, same, margin):
  # sqrt(max(d2, eps)) keeps the gradient finite when a dissimilar pair collapses to one point.
  d = jnp.sqrt(jnp.maximum(d2, 1e-12))
  same = same.astype(jnp.float32)
  per_pair = same * d2 + (1.0 - same) * jnp.square(jnp.maximum(margin - d, 0.0))
  return 0.5 * per_pair.mean()


def contrastive_loss(features_a, features_b, same, margin, *, normalize: bool = False):
  return contrastive_from_distances(
      pair_distances_squared(features_a, features_b, normalize=normalize), same, margin
  )
