"""Split equivalence, layer naming and cut errors of the VGG models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from privjax import models

pytestmark = pytest.mark.unit


def _images(n, size, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, 3), minval=0, maxval=255)


@pytest.mark.parametrize('cut', ['conv2_1', 'pool3', 'conv4_2', 'pool4', 'fc6', 'fc7'])
def test_vgg_mini_head_of_extractor_equals_model(cut):
  model = models.SplitModel('vgg_mini', cut, 3, rngs=nnx.Rngs(0))
  x = _images(2, 64)
  features, logits = model.features_and_logits(x)
  np.testing.assert_array_equal(model(x), model.head(model.extractor(x)))
  np.testing.assert_array_equal(logits, model(x))
  assert features.shape[1:] == models.feature_shape(models.get_architecture('vgg_mini'), cut)
  assert logits.shape == (2, 3)


def test_models_cut_at_different_layers_compute_the_same_function():
  """Moving the cut must not change the network: same weights, same logits."""
  a = models.SplitModel('vgg_mini', 'conv3_1', 2, rngs=nnx.Rngs(0))
  b = models.SplitModel('vgg_mini', 'fc7', 2, rngs=nnx.Rngs(1))
  loaded, skipped = models.load_layer_params(b, models.layer_params(a))
  assert skipped == [] and 'conv3_1' in loaded and 'classifier' in loaded
  x = _images(2, 64, seed=3)
  np.testing.assert_allclose(a(x), b(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cut', ['conv4_3', 'pool5', 'fc6'])
def test_vgg16_split_equivalence(cut):
  model = models.SplitModel('vgg16', cut, 2, rngs=nnx.Rngs(0))
  names = model.extractor.names + model.head.names
  assert names[:3] == ('input', 'conv1_1', 'conv1_2')
  assert names[-4:] == ('pool5', 'fc6', 'fc7', 'classifier')
  assert model.extractor.names[-1] == cut
  x = _images(1, 224)
  np.testing.assert_array_equal(model(x), model.head(model.extractor(x)))


def test_vgg16_has_the_papers_parameter_count():
  model = models.SplitModel('vgg16', 'conv5_3', 1000, rngs=nnx.Rngs(0))
  n = sum(p.size for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
  assert n == 138_357_544  # VGG-16 configuration D with a 1000-way classifier


def test_unknown_cut_lists_valid_names():
  with pytest.raises(ValueError, match=r"unknown cut layer 'conv9_9'.*valid: conv4_1, conv4_2"):
    models.SplitModel('vgg16', 'conv9_9', 2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='valid: .*conv5_3.*fc7'):
    models.SplitModel('vgg16', 'conv3_1', 2, rngs=nnx.Rngs(0))  # before conv4_x: not allowed


def test_unknown_architecture_lists_valid_names():
  with pytest.raises(
      ValueError, match="unknown architecture 'resnet'; valid: vgg16, vgg16_112, vgg16_64, vgg_mini"
  ):
    models.SplitModel('resnet', 'fc6', 2, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('arch,size,pool5', [('vgg16_64', 64, 2), ('vgg16_112', 112, 3)])
def test_vgg16_on_small_photos_has_vgg16s_convolutions_and_a_smaller_fc6(arch, size, pool5):
  model = nnx.eval_shape(lambda: models.SplitModel(arch, 'conv1_1', 2, rngs=nnx.Rngs(0)))
  full = nnx.eval_shape(lambda: models.SplitModel('vgg16', 'conv5_3', 2, rngs=nnx.Rngs(0)))
  shapes = lambda m: {
      k: jax.tree_util.tree_map(jnp.shape, v) for k, v in models.layer_params(m).items()
  }
  ours, vgg16 = shapes(model), shapes(full)
  assert {k: v for k, v in ours.items() if k.startswith('conv')} == {
      k: v for k, v in vgg16.items() if k.startswith('conv')
  }
  assert ours['fc6']['linear']['kernel'] == (pool5 * pool5 * 512, 4096)  # 7 * 7 * 512 at 224
  spec = models.get_architecture(arch)
  assert spec.valid_cuts[0] == 'conv1_1' and spec.valid_cuts[-1] == 'fc7'
  assert models.feature_shape(spec, 'pool4') == (size // 16, size // 16, 512)
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  logits = jax.eval_shape(lambda state, x: nnx.merge(graphdef, state)(x), state, x)
  assert logits.shape == (1, 2)


def test_normalization_is_the_extractors_first_op():
  model = models.SplitModel(
      'vgg_mini',
      'conv4_2',
      2,
      rngs=nnx.Rngs(0),
      mean=(0.1, 0.2, 0.3),
      std=(0.5, 0.5, 0.5),
      channel_order='BGR',
  )
  x = jnp.full((1, 2, 2, 3), 255.0) * jnp.asarray([1.0, 0.0, 0.0])
  out = model.extractor.input(x)
  # BGR reverses channels before normalising: R=255 lands in the last channel.
  np.testing.assert_allclose(
      out[0, 0, 0], [(0 - 0.1) / 0.5, (0 - 0.2) / 0.5, (1 - 0.3) / 0.5], rtol=1e-6
  )


def test_build_head_is_fresh_and_shaped_like_the_head():
  model = models.SplitModel('vgg_mini', 'conv4_2', 2, rngs=nnx.Rngs(0))
  head = models.build_head('vgg_mini', 'conv4_2', 7, rngs=nnx.Rngs(5))
  assert head.names == model.head.names
  feats = model.extractor(_images(2, 64))
  assert head(feats).shape == (2, 7)


def test_dropout_acts_only_when_training_and_is_a_function_of_its_key():
  import jax

  model = models.SplitModel('vgg_mini_photo', 'conv4_2', 2, rngs=nnx.Rngs(0))
  x = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
  plain = model(x)
  np.testing.assert_array_equal(model(x, rng=jax.random.key(1)), plain)  # eval: no dropout
  a = model(x, rng=jax.random.key(1), train=True)
  b = model(x, rng=jax.random.key(1), train=True)
  c = model(x, rng=jax.random.key(2), train=True)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, plain) and not np.allclose(a, c)
  # The extractor (what ships) has no dropout: its features are the same in training.
  np.testing.assert_array_equal(
      model.extractor(x, rng=jax.random.key(1), train=True), model.extractor(x)
  )


@pytest.mark.parametrize('dtype', [None, jnp.bfloat16])
def test_conv_layer_is_nnx_conv_plus_relu_and_so_are_its_gradients(dtype):
  """Conv computes nnx.Conv's own conv + bias itself (for add_bias's gradient): same function,
  same gradients as autodiff of relu(nnx.Conv(x)) on every input."""
  layer = models.vgg.Conv(5, 7, dtype=dtype, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  bias = jax.random.normal(jax.random.key(1), (7,))  # nonzero, so a dropped bias shows
  params['conv']['bias'].set_value(bias)
  x = jax.random.normal(jax.random.key(2), (3, 9, 6, 5))

  def ours(p, x):
    return nnx.merge(graphdef, p)(x).astype(jnp.float32)

  def reference(p, x):
    return jax.nn.relu(nnx.merge(graphdef, p).conv(x)).astype(jnp.float32)

  np.testing.assert_array_equal(jax.jit(ours)(params, x), jax.jit(reference)(params, x))
  # A cotangent with structure, so the bias gradient's sum over batch and space is checked.
  weights = jax.random.normal(jax.random.key(3), (3, 9, 6, 7))

  def loss(f):
    return lambda p, x: (f(p, x) * weights).sum()

  ours_grad = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(params, x)
  ref_grad = jax.jit(jax.grad(loss(reference), argnums=(0, 1)))(params, x)
  tol = 1e-5 if dtype is None else 2e-2
  for a, b in zip(jax.tree.leaves(ours_grad), jax.tree.leaves(ref_grad)):
    assert a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(jnp.abs(b).max()))


def _reduce_window_pool(x):
  """The textbook max-pool (lax.reduce_window; its gradient is select-and-scatter)."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('shape', [(2, 6, 8, 3), (1, 7, 5, 2)])
def test_pool_and_its_gradient_equal_reduce_window_max_pool(ties, shape):
  """Same values, and each window's gradient goes to its first maximum, ties included (inputs
  drawn from {0, 1, 2} tie often; odd sizes drop the last row or column)."""
  key = jax.random.key(sum(shape) + ties)
  if ties:
    x = jax.random.randint(key, shape, 0, 3).astype(jnp.float32)
  else:
    x = jax.random.normal(key, shape)
  pool = models.vgg.Pool()
  np.testing.assert_array_equal(pool(x), _reduce_window_pool(x))
  g = jax.random.normal(jax.random.key(7), _reduce_window_pool(x).shape)
  ours = jax.grad(lambda x: (pool(x) * g).sum())(x)
  ref = jax.grad(lambda x: (_reduce_window_pool(x) * g).sum())(x)
  np.testing.assert_array_equal(jax.jit(jax.grad(lambda x: (pool(x) * g).sum()))(x), ours)
  np.testing.assert_array_equal(ours, ref)
  if ties:  # some window has tied maxima: the case where splitting the gradient would differ
    n, h, w, c = shape
    windows = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    hits = (windows == _reduce_window_pool(x)[:, :, None, :, None]).sum((2, 4))
    assert (hits > 1).any()
