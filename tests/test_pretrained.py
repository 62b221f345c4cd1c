"""Pretrained VGG-16 import: outputs equal the source frameworks', and bad files are refused.

The fixtures (tests/fixtures/vgg16_narrow_*) are a VGG-16 at 1/16 of the widths on 64x64 inputs
(pool5 is 2x2, so fc6's flatten order matters), written and run by torch/torchvision and Keras:
tools/make_pretrained_fixtures.py. Neither framework is needed here.
"""

import os
import pickle
import sys
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx

from privjax import errors
from privjax.models import pretrained, vgg
from privjax.train import checkpoint, loop

pytestmark = pytest.mark.e2e

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
FILES = {
    'vgg16_narrow_torchvision.pth': 'torchvision',
    'vgg16_narrow_torchvision_legacy.pth': 'torchvision',
    'vgg16_narrow_keras.h5': 'keras',  # keras-applications' layout: block1_conv1_W_1:0
    'vgg16_narrow_keras2.h5': 'keras',
}  # Keras 2's save_weights layout: block1_conv1/kernel:0
needs_h5py = pytest.mark.skipif(
    not __import__('importlib').util.find_spec('h5py'),
    reason='h5py is not installed (pip install -r requirements-test.txt)',
)


def _fixture(name):
  return os.path.join(FIXTURES, name)


@pytest.fixture(scope='module')
def reference():
  return dict(np.load(_fixture('vgg16_narrow_reference.npz')))


def _activations(model, x):
  out = {}
  for stack in (model.extractor, model.head):
    for name in stack.names:
      x = getattr(stack, name)(x)
      out[name] = np.asarray(x)
  return out


def _marks(name):
  return [needs_h5py] if name.endswith('.h5') else []


@pytest.mark.parametrize('name', [pytest.param(n, marks=_marks(n)) for n in FILES])
def test_imported_network_matches_the_source_framework(name, reference):
  model = pretrained.model_from_file(_fixture(name), 'conv5_3')  # no layer left to initialise
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(nnx.state(model)))
  source = FILES[name]
  assert model.arch == 'vgg16_like' and model.extractor.input.channel_order == (
      pretrained.normalization_for(source)['channel_order']
  )
  acts = _activations(model, reference['images'])  # raw uint8 pixels: normalisation is in-model
  for ours, theirs in (('conv5_3', 'conv5_3'), ('fc6', 'fc6'), ('classifier', 'logits')):
    expected = reference[f'{source}_{theirs}']
    scale = np.abs(expected).max()
    # float32 tolerance relative to the activations' scale (Keras' caffe inputs are 0..255 wide).
    np.testing.assert_allclose(
        acts[ours], expected, rtol=1e-4, atol=2e-6 * scale, err_msg=f'{name}: {ours}'
    )


@needs_h5py
def test_torch_and_keras_files_of_the_same_network_import_identically():
  a = pretrained.read(_fixture('vgg16_narrow_torchvision.pth'))
  for other in (
      'vgg16_narrow_torchvision_legacy.pth',
      'vgg16_narrow_keras.h5',
      'vgg16_narrow_keras2.h5',
  ):
    b = pretrained.read(_fixture(other))
    assert (a.widths, a.fc, a.num_classes, a.image_size) == (
        b.widths,
        b.fc,
        b.num_classes,
        b.image_size,
    )
    for layer, tree in a.params.items():
      for kind, arrays in tree.items():
        for key, value in arrays.items():
          np.testing.assert_array_equal(value, b.params[layer][kind][key], err_msg=other)
  assert a.widths == ((4, 4), (8, 8), (16, 16, 16), (32, 32, 32), (32, 32, 32))
  assert (a.fc, a.num_classes, a.image_size) == ((64, 64), 5, 64)


def test_fixture_exercises_the_flatten_order(reference):
  """With torch's (C, H, W) rows taken as (H, W, C) rows, fc6 would come out wrong."""
  weights = pretrained.read(_fixture('vgg16_narrow_torchvision.pth'))
  model = pretrained.model_from_file(_fixture('vgg16_narrow_torchvision.pth'), 'pool5')
  pool5 = np.asarray(model.extractor(reference['images'])).reshape(2, -1)
  state = pretrained.read_torch_state_dict(_fixture('vgg16_narrow_torchvision.pth'))
  unpermuted = np.maximum(pool5 @ state['classifier.0.weight'].T + state['classifier.0.bias'], 0)
  permuted = np.maximum(
      pool5 @ weights.params['fc6']['linear']['kernel'] + weights.params['fc6']['linear']['bias'], 0
  )
  expected = reference['torchvision_fc6']
  np.testing.assert_allclose(permuted, expected, rtol=1e-4, atol=1e-5)
  assert np.abs(unpermuted - expected).max() > 0.1 * np.abs(expected).max()


def test_vgg16_like_with_vgg16s_widths_is_vgg16():
  ours = vgg.ARCHITECTURES['vgg16']
  like = pretrained.vgg16_like(*pretrained._VGG16_SHAPE, name='vgg16')
  assert like == ours


def test_other_class_count_reinitialises_only_the_classifier(capsys):
  model = vgg.SplitModel(
      pretrained.read(_fixture('vgg16_narrow_torchvision.pth')).architecture(),
      'fc6',
      2,
      rngs=nnx.Rngs(0),
  )
  before = np.asarray(model.head.classifier.linear.kernel[...])
  loaded, skipped = pretrained.load_pretrained(model, _fixture('vgg16_narrow_torchvision.pth'))
  assert skipped == ['classifier'] and loaded[0] == 'conv1_1' and loaded[-1] == 'fc7'
  np.testing.assert_array_equal(model.head.classifier.linear.kernel[...], before)
  out = capsys.readouterr().out
  assert 'loaded conv1_1, conv1_2' in out
  assert 're-initialised classifier (5 classes in the file, 2 here)' in out


def test_model_from_file_with_another_class_count_needs_rngs():
  path = _fixture('vgg16_narrow_torchvision.pth')
  with pytest.raises(errors.PretrainedError, match='does not fill every layer.*pass rngs'):
    pretrained.model_from_file(path, 'fc6', num_classes=3)
  model = pretrained.model_from_file(path, 'fc6', num_classes=3, rngs=nnx.Rngs(0))
  assert model.head.classifier.linear.kernel.shape == (64, 3)


def test_file_of_another_network_is_refused():
  arch = pretrained.vgg16_like(
      ((4, 4), (8, 8), (16, 16, 16), (32, 32, 32), (32, 32, 16)), (64, 64), 64
  )
  model = vgg.SplitModel(arch, 'conv5_3', 5, rngs=nnx.Rngs(0))
  with pytest.raises(
      errors.PretrainedError,
      match=r'layer conv5_3 has shapes .* in the file but .*another network',
  ):
    pretrained.load_pretrained(model, _fixture('vgg16_narrow_torchvision.pth'))


def test_normalisation_matches_each_frameworks_preprocessing():
  images = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3)).astype(np.float32)
  torch_norm = pretrained.normalization_for('torchvision')
  model_input = vgg.Normalize(**torch_norm, dtype=None)(images)
  expected = (images / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(model_input, expected, rtol=1e-5, atol=1e-5)
  keras_input = vgg.Normalize(**pretrained.normalization_for('keras'), dtype=None)(images)
  # keras.applications.vgg16.preprocess_input: RGB -> BGR, minus the Caffe means, unscaled.
  expected = images[..., ::-1] - np.array([103.939, 116.779, 123.68])
  np.testing.assert_allclose(keras_input, expected, rtol=1e-5, atol=1e-3)


def _write_zip_pickle(path, obj_bytes):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', obj_bytes)


def test_torch_files_that_are_not_plain_state_dicts_are_refused(tmp_path):
  evil = tmp_path / 'evil.pth'
  _write_zip_pickle(evil, pickle.dumps(os.system))  # a global that must never be looked up
  with pytest.raises(
      errors.PretrainedError,
      match=r'holds a (posix|nt)\.system, not just '
      r'tensors; save the weights with torch.save\(model.state_dict\(\), path\)',
  ):
    pretrained.read(str(evil))
  not_torch = tmp_path / 'random.pth'
  not_torch.write_bytes(b'not a torch file at all')
  with pytest.raises(errors.PretrainedError, match='neither a torch zip archive nor a legacy'):
    pretrained.read(str(not_torch))
  truncated = tmp_path / 'truncated.pth'
  data = open(_fixture('vgg16_narrow_torchvision_legacy.pth'), 'rb').read()
  truncated.write_bytes(data[: len(data) - 1000])
  with pytest.raises(errors.PretrainedError, match='ends early'):
    pretrained.read(str(truncated))
  wrong_keys = tmp_path / 'wrong.pth'
  _write_zip_pickle(wrong_keys, pickle.dumps({'fc.weight': 1}))
  with pytest.raises(
      errors.PretrainedError,
      match='not a torchvision VGG-16 state_dict: it has no features.0.weight',
  ):
    pretrained.read(str(wrong_keys))


def test_unknown_suffix_missing_file_and_missing_h5py(tmp_path, monkeypatch):
  with pytest.raises(errors.PretrainedError, match=r"unknown weight file type '.npz'"):
    pretrained.read(str(tmp_path / 'w.npz'))
  with pytest.raises(FileNotFoundError, match='do not exist'):
    pretrained.read(str(tmp_path / 'w.pth'))
  monkeypatch.setitem(sys.modules, 'h5py', None)  # import h5py raises ImportError
  with pytest.raises(
      errors.PretrainedError, match=r'^reading Keras .h5 weights needs h5py: pip install h5py$'
  ):
    pretrained.read(_fixture('vgg16_narrow_keras.h5'))


@needs_h5py
def test_h5_file_without_vgg_layers_is_refused(tmp_path):
  import h5py

  path = tmp_path / 'model.weights.h5'
  with h5py.File(path, 'w') as f:
    f.create_group('layers')
    f.create_group('vars')
  with pytest.raises(
      errors.PretrainedError,
      match='not a Keras VGG16 weights file: it has no ' 'block1_conv1 group',
  ):
    pretrained.read(str(path))


@pytest.fixture
def narrow_arch(monkeypatch):
  """The fixture's architecture, registered so that a training config can name it."""
  arch = pretrained.read(_fixture('vgg16_narrow_torchvision.pth')).architecture()
  arch = vgg.Architecture(
      'vgg16_narrow', arch.image_size, arch.layers, arch.valid_cuts, arch.default_cut
  )
  monkeypatch.setitem(vgg.ARCHITECTURES, 'vgg16_narrow', arch)
  return arch


def _pretrained_config(tiny_config, **input_overrides):
  config = tiny_config('none,tiny')
  config.model.arch = 'vgg16_narrow'
  config.model.cut = 'conv5_3'
  config.model.pretrained = _fixture('vgg16_narrow_torchvision.pth')
  for key, value in {**pretrained.normalization_for('torchvision'), **input_overrides}.items():
    config.input[key] = value
  return config


def test_training_starts_from_the_file(narrow_arch, tiny_config, tmp_path, capsys):
  config = _pretrained_config(tiny_config)
  config.total_steps = 1
  result = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert result['step'] == 1
  out = capsys.readouterr().out
  assert 'vgg16_narrow_torchvision.pth (torchvision): loaded conv1_1' in out
  assert 're-initialised classifier (5 classes in the file, 2 here)' in out
  _, params, _, _ = checkpoint.restore_run(str(tmp_path / 'run'))
  kernel = pretrained.read(config.model.pretrained).params['conv1_1']['conv']['kernel']
  # One Adam step of lr 1e-3 from the file's weights, not from a fresh initialisation.
  assert np.abs(params['extractor']['conv1_1']['conv']['kernel'] - kernel).max() < 2e-3


def test_training_refuses_a_file_that_does_not_fit_before_writing(
    narrow_arch, tiny_config, tmp_path
):
  config = _pretrained_config(tiny_config, channel_order='BGR')
  with pytest.raises(
      errors.PretrainedError,
      match='differs from the one torchvision weights '
      r'were trained with.*normalization_for\(.torchvision.\)',
  ):
    loop.train_and_evaluate(config, str(tmp_path / 'a'))
  config = _pretrained_config(tiny_config)
  config.model.arch = 'vgg_mini'
  config.model.cut = 'conv4_2'
  with pytest.raises(errors.PretrainedError, match='layer conv1_1 has shapes'):
    loop.train_and_evaluate(config, str(tmp_path / 'b'))
  assert not os.path.exists(tmp_path / 'a') and not os.path.exists(tmp_path / 'b')
