"""`nopeek`: distance correlation between the input images and the cut features (Vepakomma et al.,
"NoPeek: Information leakage reduction to share activations in distributed deep learning", 2020).

Loss term: `weight * dCor(X, Z)` over the step's 2B images, X the raw pixels (flattened, in [0, 1])
and Z the cut features (flattened). dCor (Székely et al. 2007) is 0 when X and Z are independent and
1 when Z is an affine function of X up to rotation and scale; lowering it makes the features less
predictive of the image and so of who is in it, while the primary loss keeps what the task needs.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from privjax.defences.base import Defence


def _centred_distances(x):
  """Double-centred Euclidean distance matrix of the rows of x (float32)."""
  x = x.reshape(x.shape[0], -1).astype(jnp.float32)
  sq = jnp.sum(jnp.square(x), axis=1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
  # Coinciding rows (the diagonal, repeated images) have distance 0, where sqrt's gradient is
  # infinite: the double `where` keeps both the value and the gradient finite there.
  positive = d2 > 1e-10
  d = jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)
  return d - d.mean(axis=0, keepdims=True) - d.mean(axis=1, keepdims=True) + d.mean()


def distance_correlation(x, z):
  """Sample distance correlation (Székely et al. 2007) of the rows of x and z, in [0, 1]."""
  a, b = _centred_distances(x), _centred_distances(z)
  dcov_xz = jnp.mean(a * b)
  dvar = jnp.sqrt(jnp.maximum(jnp.mean(a * a) * jnp.mean(b * b), 1e-24))
  return jnp.sqrt(jnp.maximum(dcov_xz, 0.0) / dvar + 1e-12)


@dataclasses.dataclass(frozen=True)
class Settings:
  """`config.defence.nopeek`."""

  weight: float = 1.0
  strength: str = 'weight'
  strengths: tuple = (0.3, 1.0, 3.0)


class NoPeek(Defence):
  name = 'nopeek'
  strength = 'weight'

  def loss(self, state, features, batch, rng, params):
    dcor = distance_correlation(batch['image'].astype(jnp.float32) / 255.0, features)
    return self.cfg.weight * dcor, {'dcor': dcor}


DEFENCE = NoPeek
