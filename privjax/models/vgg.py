"""VGG-style networks as an ordered list of named layers, split into extractor and head.

What lives here: the layer specifications of `vgg16` (the paper's network) and `vgg_mini` (a small
VGG-style network for CPU work), the layer modules, and `SplitModel`, whose two submodules
`extractor` (runs on the user's device) and `head` (runs in the cloud) compose to the full network.

Must not import privjax.train, privjax.data, privjax.config or anything that touches files: models
are pure functions of their parameters, so the extractor can be exported and the head rebuilt
anywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  name: str
  kind: str  # 'conv' (3x3 + ReLU), 'pool' (2x2 max), 'dense' (+ ReLU), 'classifier' (no ReLU)
  features: int = 0


@dataclasses.dataclass(frozen=True)
class Architecture:
  name: str
  image_size: int
  layers: tuple[LayerSpec, ...]
  valid_cuts: tuple[str, ...]
  default_cut: str
  dropout: float = 0.0  # dropout rate after each hidden dense layer (training only)

  @property
  def layer_names(self) -> tuple[str, ...]:
    return tuple(l.name for l in self.layers)


def _conv_blocks(blocks: Sequence[Sequence[int]]) -> list[LayerSpec]:
  layers = []
  for b, widths in enumerate(blocks, start=1):
    for i, w in enumerate(widths, start=1):
      layers.append(LayerSpec(f'conv{b}_{i}', 'conv', w))
    layers.append(LayerSpec(f'pool{b}', 'pool'))
  return layers


def _architecture(name, image_size, blocks, fc, first_cut, default_cut, **options):
  layers = _conv_blocks(blocks)
  layers += [LayerSpec(f'fc{6 + i}', 'dense', w) for i, w in enumerate(fc)]
  layers.append(LayerSpec('classifier', 'classifier'))
  names = [l.name for l in layers]
  valid = tuple(names[names.index(first_cut) : -1])
  return Architecture(name, image_size, tuple(layers), valid, default_cut, **options)


VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

ARCHITECTURES: dict[str, Architecture] = {
    # Simonyan & Zisserman configuration D, as used (pretrained) by the paper; cut from conv4_x to fc7.
    'vgg16': _architecture(
        'vgg16', 224, VGG16_BLOCKS, [4096, 4096], first_cut='conv4_1', default_cut='conv5_3'
    ),
    # The same network on smaller photos: the convolutions (and so ImageNet weights) do not depend
    # on the input size, only fc6's input does (pool5 is 2x2x512 at 64 px; at 112 px it is 3x3x512,
    # as pooling drops conv5_3's 7th row and column). Any layer can be the cut: small photos make
    # early cuts affordable (conv1_2 uploads 64x64x64 values at 64 px).
    'vgg16_64': _architecture(
        'vgg16_64', 64, VGG16_BLOCKS, [4096, 4096], first_cut='conv1_1', default_cut='conv5_3'
    ),
    'vgg16_112': _architecture(
        'vgg16_112', 112, VGG16_BLOCKS, [4096, 4096], first_cut='conv1_1', default_cut='conv5_3'
    ),
    # Same naming idea at 64x64, narrow enough to train on two CPU cores in minutes.
    'vgg_mini': _architecture(
        'vgg_mini',
        64,
        [[16], [32], [64, 64], [128, 128]],
        [256, 256],
        first_cut='conv2_1',
        default_cut='conv4_2',
    ),
    # vgg_mini with dropout after each hidden dense layer: the from-scratch model for real photos
    # (configs/lfw_photos.py). GroupNorm after each convolution was tried and learned far slower.
    'vgg_mini_photo': _architecture(
        'vgg_mini_photo',
        64,
        [[16], [32], [64, 64], [128, 128]],
        [256, 256],
        first_cut='conv2_1',
        default_cut='conv4_2',
        dropout=0.5,
    ),
}


def get_architecture(name: str | Architecture) -> Architecture:
  # An Architecture passes through, so a network read from a weight file (pretrained.vgg16_like)
  # builds like a registered one.
  if isinstance(name, Architecture):
    return name
  if name not in ARCHITECTURES:
    raise ValueError(f'unknown architecture {name!r}; valid: {", ".join(sorted(ARCHITECTURES))}')
  return ARCHITECTURES[name]


def check_cut(arch: Architecture, cut: str) -> None:
  if cut not in arch.valid_cuts:
    raise ValueError(
        f'unknown cut layer {cut!r} for {arch.name}; valid: {", ".join(arch.valid_cuts)}'
    )


@jax.custom_vjp
def add_bias(y, bias):
  """`y + bias` over the last axis; on CPU the bias gradient is a matrix-vector product.

  Autodiff would sum the cotangent over batch and space, which XLA:CPU splits into a tree of
  reduce-windows (for precision) that ran ~4x slower than `ones @ g` on conv1_1's gradient. The
  product accumulates in float32 at least, as the reduction does; other backends keep the sum.
  """
  return y + bias


def _add_bias_fwd(y, bias):
  return y + bias, None


def _add_bias_bwd(_, g):
  rows = g.reshape(-1, g.shape[-1])
  acc = jnp.promote_types(g.dtype, jnp.float32)

  def matvec(rows):
    ones = jnp.ones((rows.shape[0],), rows.dtype)
    return jnp.dot(ones, rows, preferred_element_type=acc).astype(g.dtype)

  def total(rows):
    return rows.sum(0, dtype=acc).astype(g.dtype)

  return g, jax.lax.platform_dependent(rows, cpu=matvec, default=total)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


class Conv(nnx.Module):
  """3x3 convolution (SAME padding, stride 1) + bias + ReLU; the parameters live in an nnx.Conv."""

  def __init__(self, in_features: int, out_features: int, *, dtype, rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_features, out_features, (3, 3), padding='SAME', dtype=dtype, rngs=rngs)

  def __call__(self, x):
    # nnx.Conv's own computation for this configuration, with the bias added by add_bias (the
    # forward pass is the same operations; tests/test_models.py checks it against self.conv).
    conv = self.conv
    x, kernel, bias = conv.promote_dtype((x, conv.kernel[...], conv.bias[...]), dtype=conv.dtype)
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        (1, 1),
        'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision=conv.precision,
    )
    return jax.nn.relu(add_bias(y, bias))


class Dropout(nnx.Module):
  """Inverted dropout from an explicit key; active only when training (`train=True`)."""

  samples = True

  def __init__(self, rate: float):
    self.rate = float(rate)

  def __call__(self, x, *, rng=None, train: bool = False):
    if not train or self.rate == 0.0:
      return x
    keep = jax.random.bernoulli(rng, 1.0 - self.rate, x.shape)
    return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype)


class Normalize(nnx.Module):
  """Raw pixels (0..255, RGB) to network input: channel order, then (x / 255 - mean) / std.

  It is the extractor's first layer so that the device-side artifact takes raw pixels and carries the
  normalisation the weights were trained (or imported) with.
  """

  def __init__(self, mean, std, channel_order: str, dtype):
    self.mean = tuple(float(m) for m in mean)
    self.std = tuple(float(s) for s in std)
    self.channel_order = channel_order
    self.dtype = dtype

  def __call__(self, x):
    x = x.astype(jnp.float32)
    if self.channel_order == 'BGR':
      x = x[..., ::-1]
    x = (x / 255.0 - jnp.asarray(self.mean)) / jnp.asarray(self.std)
    return x.astype(self.dtype or jnp.float32)


@jax.custom_vjp
def max_pool_2x2(x):
  """2x2 max-pool, stride 2, of [N, H, W, C] with even H and W, as a reshape and max.

  Its gradient goes to the first maximum of each window in row-major order, as reduce_window's
  (select-and-scatter) and PyTorch's do. It is computed as one elementwise select: autodiff of the
  reshape-max would split it between tied maxima, and counting the ties cost the vgg_mini
  training step ~5% of its CPU time; reduce_window itself was ~25% slower.
  """
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_fwd(x):
  y = max_pool_2x2(x)
  return y, (x, y)


def _max_pool_bwd(residuals, g):
  x, y = residuals
  n, h, w, c = x.shape
  window = x.reshape(n, h // 2, 2, w // 2, 2, c)
  taken = jnp.zeros(y.shape, bool)
  rows = []
  for i in range(2):
    row = []
    for j in range(2):
      # The last position takes what is left, so a NaN window still routes its gradient once.
      first = ~taken if (i, j) == (1, 1) else (window[:, :, i, :, j] == y) & ~taken
      taken = taken | first
      row.append(jnp.where(first, g, jnp.zeros_like(g)))
    rows.append(jnp.stack(row, axis=3))
  return (jnp.stack(rows, axis=2).reshape(x.shape),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


class Pool(nnx.Module):
  """2x2 max-pool with stride 2; odd trailing rows and columns are dropped (VALID padding)."""

  def __call__(self, x):
    n, h, w, c = x.shape
    return max_pool_2x2(x[:, : h // 2 * 2, : w // 2 * 2])


class Dense(nnx.Module):
  """Flattens spatial input first, so the first dense layer after a conv block needs no extra layer."""

  def __init__(self, in_features: int, out_features: int, *, relu: bool, dtype, rngs: nnx.Rngs):
    self.linear = nnx.Linear(in_features, out_features, dtype=dtype, rngs=rngs)
    self.relu = relu

  def __call__(self, x):
    y = self.linear(x.reshape(x.shape[0], -1))
    return jax.nn.relu(y) if self.relu else y


class Stack(nnx.Module):
  """An ordered run of named layers; each layer is an attribute named as in the paper (conv5_3, fc6...)."""

  def __init__(self, layers: Sequence[tuple[str, nnx.Module]]):
    self.names = tuple(n for n, _ in layers)
    for name, layer in layers:
      setattr(self, name, layer)

  @property
  def samples(self) -> bool:
    """Whether a layer draws random numbers (dropout, learned noise) and so takes `rng`."""
    return any(getattr(getattr(self, n), 'samples', False) for n in self.names)

  def __call__(self, x, *, rng=None, train: bool = False, reports: dict | None = None):
    """`reports`, when given, receives {name: layer.report(its input)} from the layers that have a
    `report` method (a defence's device layer reporting what its loss needs, such as a KL term)."""
    for i, name in enumerate(self.names):
      layer = getattr(self, name)
      if reports is not None and hasattr(layer, 'report'):
        reports[name] = layer.report(x)
      if getattr(layer, 'samples', False):
        x = layer(x, rng=None if rng is None else jax.random.fold_in(rng, i), train=train)
      else:
        x = layer(x)
    return x


def _shape_after(spec: LayerSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
  if spec.kind == 'conv':
    return shape[:-1] + (spec.features,)
  if spec.kind == 'pool':
    return (shape[0] // 2, shape[1] // 2, shape[2])
  return (spec.features,)


def build_layers(
    arch: Architecture,
    specs: Sequence[LayerSpec],
    in_shape: tuple[int, ...],
    num_classes: int,
    *,
    dtype,
    rngs: nnx.Rngs,
) -> list[tuple[str, nnx.Module]]:
  """Instantiates `specs` in order, starting from per-example input shape `in_shape`."""
  layers, shape = [], tuple(in_shape)
  for spec in specs:
    if spec.kind == 'classifier':
      spec = dataclasses.replace(spec, features=num_classes)
    size = 1
    for s in shape:
      size *= s
    if spec.kind == 'conv':
      layer = Conv(shape[-1], spec.features, dtype=dtype, rngs=rngs)
    elif spec.kind == 'pool':
      layer = Pool()
    else:
      layer = Dense(size, spec.features, relu=spec.kind == 'dense', dtype=dtype, rngs=rngs)
    layers.append((spec.name, layer))
    if spec.kind == 'dense' and arch.dropout:
      layers.append((f'{spec.name}_dropout', Dropout(arch.dropout)))
    shape = _shape_after(spec, shape)
  return layers


def feature_shape(arch: Architecture, cut: str) -> tuple[int, ...]:
  """Per-example shape of the cut features (what the device uploads)."""
  shape = (arch.image_size, arch.image_size, 3)
  for spec in arch.layers:
    shape = _shape_after(spec, shape)
    if spec.name == cut:
      return shape
  raise ValueError(f'unknown cut layer {cut!r} for {arch.name}')


class SplitModel(nnx.Module):
  """`model(x) == head(extractor(x))`; the cut is the last layer of the extractor.

  `device_layers` (name, module) follow the cut inside the extractor: what a defence ships to the
  device (privjax.defences). Layers that sample (dropout, learned noise) take `rng`; dropout acts
  only with `train=True`, learned noise whenever the extractor runs.
  """

  def __init__(
      self,
      arch: str | Architecture,
      cut: str,
      num_classes: int,
      *,
      rngs: nnx.Rngs,
      dtype=None,
      mean=(0.5, 0.5, 0.5),
      std=(0.25, 0.25, 0.25),
      channel_order: str = 'RGB',
      device_layers: Sequence[tuple[str, nnx.Module]] = (),
  ):
    spec = get_architecture(arch)
    check_cut(spec, cut)
    self.arch, self.cut, self.num_classes = spec.name, cut, num_classes
    k = spec.layer_names.index(cut) + 1
    in_shape = (spec.image_size, spec.image_size, 3)
    self.extractor = Stack(
        [('input', Normalize(mean, std, channel_order, dtype))]
        + build_layers(spec, spec.layers[:k], in_shape, num_classes, dtype=dtype, rngs=rngs)
        + list(device_layers)
    )
    self.head = Stack(
        build_layers(
            spec, spec.layers[k:], feature_shape(spec, cut), num_classes, dtype=dtype, rngs=rngs
        )
    )

  def features_and_logits(self, x, *, rng=None, train: bool = False, reports=None):
    k_extractor, k_head = (None, None) if rng is None else jax.random.split(rng)
    features = self.extractor(x, rng=k_extractor, train=train, reports=reports)
    return features, self.head(features, rng=k_head, train=train)

  def __call__(self, x, *, rng=None, train: bool = False):
    return self.features_and_logits(x, rng=rng, train=train)[1]


def model_from_config(config, num_classes: int, *, rngs: nnx.Rngs, device_layers=()) -> SplitModel:
  """The `SplitModel` described by an experiment config's `model` and `input` sections."""
  dtype = {'float32': None, 'bfloat16': jnp.bfloat16}[config.model.dtype]
  return SplitModel(
      config.model.arch,
      config.model.cut,
      num_classes,
      rngs=rngs,
      dtype=dtype,
      mean=config.input.mean,
      std=config.input.std,
      channel_order=config.input.channel_order,
      device_layers=device_layers,
  )


def build_head(arch: str, cut: str, num_classes: int, *, rngs: nnx.Rngs, dtype=None) -> Stack:
  """A freshly initialised stack of the layers after `cut` (the paper's transfer-learning attacker)."""
  spec = get_architecture(arch)
  check_cut(spec, cut)
  k = spec.layer_names.index(cut) + 1
  return Stack(
      build_layers(
          spec, spec.layers[k:], feature_shape(spec, cut), num_classes, dtype=dtype, rngs=rngs
      )
  )


def layer_params(model: SplitModel) -> dict[str, dict]:
  """Parameters as pure dicts keyed by layer name, independent of where the model is cut."""
  out = {}
  for stack in (model.extractor, model.head):
    for name in stack.names:
      params = nnx.to_pure_dict(nnx.state(getattr(stack, name), nnx.Param))
      if jax.tree_util.tree_leaves(params):
        out[name] = params
  return out


def load_layer_params(model: SplitModel, params: dict[str, dict]) -> tuple[list[str], list[str]]:
  """Copies layers with the same name and shapes into `model`; returns (loaded, not loaded) names.

  `params` maps layer names to pure dicts as returned by `layer_params` (or a weight importer).
  """
  loaded, skipped = [], []
  for stack in (model.extractor, model.head):
    for name in stack.names:
      layer = getattr(stack, name)
      target = nnx.state(layer, nnx.Param)
      pure = nnx.to_pure_dict(target)
      if not jax.tree_util.tree_leaves(pure):
        continue
      source = params.get(name)
      same = source is not None and (
          jax.tree_util.tree_structure(source) == jax.tree_util.tree_structure(pure)
          and all(
              jnp.shape(a) == jnp.shape(b)
              for a, b in zip(jax.tree_util.tree_leaves(source), jax.tree_util.tree_leaves(pure))
          )
      )
      if same:
        nnx.replace_by_pure_dict(target, jax.tree_util.tree_map(jnp.asarray, source))
        nnx.update(layer, target)
        loaded.append(name)
      else:
        skipped.append(name)
  return loaded, skipped
