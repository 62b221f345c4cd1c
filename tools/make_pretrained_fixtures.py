r"""Writes tests/fixtures/vgg16_narrow_*: VGG-16-shaped weight files and their frameworks' outputs.

  KERAS_BACKEND=torch python tools/make_pretrained_fixtures.py [--out tests/fixtures]

Needs torch, torchvision (only its pure-Python VGG module is used), keras >= 3 and h5py; none of
them is a privjax dependency, and the tests only read what this writes.

The network is torchvision's `VGG(make_layers(cfgs['D']))` at 1/16 of the widths, with a classifier
of the same structure (64-wide fc6/fc7, 5 classes), on 64x64 inputs so that pool5 is 2x2 and fc6's
flatten order matters. Its random weights (random biases too, so the bias mapping is tested) are
written as
  vgg16_narrow_torchvision.pth         torch.save(state_dict) (zip format)
  vgg16_narrow_torchvision_legacy.pth  the same in torch's legacy format (the model-zoo file's)
  vgg16_narrow_keras.h5                the same numbers in the layout of keras-applications'
                                       vgg16_weights_tf_dim_ordering_tf_kernels.h5
                                       (groups block1_conv1 ... predictions, datasets <name>_W_1:0)
  vgg16_narrow_keras2.h5               the same in Keras 2's save_weights layout (<name>/kernel:0)
and vgg16_narrow_reference.npz holds two raw uint8 images and, for each source, the logits and the
conv5_3 and fc6 activations (after ReLU, NHWC) computed by that framework's own forward pass from
its own preprocessing: torchvision's ImageNet normalisation for torch, and Keras'
`keras.applications.vgg16.preprocess_input` with the file loaded by `Model.load_weights` for Keras.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

import numpy as np

WIDTH_DIVISOR = 16
FC = 64
NUM_CLASSES = 5
IMAGE_SIZE = 64
BLOCK_SIZES = (2, 2, 3, 3, 3)


def import_torchvision_vgg():
  """torchvision.models.vgg; when torchvision's native ops do not load (a CUDA build of
  torchvision next to a CPU torch), the package is entered without its __init__, which only the
  native ops need."""
  try:
    from torchvision.models import vgg

    return vgg
  except (ImportError, RuntimeError, OSError):
    import importlib.util

    spec = importlib.util.find_spec('torchvision')
    if spec is None:
      raise
    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
      del sys.modules[name]
    package = types.ModuleType('torchvision')
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules['torchvision'] = package
    from torchvision.models import vgg

    return vgg


def torch_network(seed: int):
  import torch
  from torch import nn

  vgg = import_torchvision_vgg()
  cfg = [v if v == 'M' else v // WIDTH_DIVISOR for v in vgg.cfgs['D']]
  model = vgg.VGG(vgg.make_layers(cfg), num_classes=NUM_CLASSES, init_weights=False)
  side = IMAGE_SIZE // 32
  channels = cfg[-2]
  # torchvision's head assumes 224x224 inputs (7x7 pool5, 4096 wide); the same structure, narrower.
  model.avgpool = nn.AdaptiveAvgPool2d((side, side))
  model.classifier = nn.Sequential(
      nn.Linear(channels * side * side, FC),
      nn.ReLU(True),
      nn.Dropout(),
      nn.Linear(FC, FC),
      nn.ReLU(True),
      nn.Dropout(),
      nn.Linear(FC, NUM_CLASSES),
  )
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith('weight'):
        fan_in = p[0].numel()
        p.copy_(torch.randn(p.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
      else:
        p.copy_((torch.rand(p.shape, generator=generator) - 0.5) * 0.2)
  return model.eval()


def torch_outputs(model, images: np.ndarray) -> dict[str, np.ndarray]:
  import torch

  acts = {}
  relu_conv5_3 = model.features[29]  # features[28] is conv5_3; its ReLU works in place
  relu_fc6 = model.classifier[1]
  relu_conv5_3.register_forward_hook(lambda m, i, o: acts.__setitem__('conv5_3', o.clone()))
  relu_fc6.register_forward_hook(lambda m, i, o: acts.__setitem__('fc6', o.clone()))
  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  with torch.no_grad():
    logits = model((x - mean) / std)
  return {
      'logits': logits.numpy(),
      'conv5_3': acts['conv5_3'].permute(0, 2, 3, 1).numpy(),
      'fc6': acts['fc6'].numpy(),
  }


def keras_layers(state: dict[str, np.ndarray]) -> list[tuple[str, list[np.ndarray]]]:
  """(Keras layer name, [kernel, bias]) in Keras' layouts, from a torchvision state_dict."""
  conv_keys = [k for k in state if k.startswith('features.') and k.endswith('.weight')]
  conv_keys.sort(key=lambda k: int(k.split('.')[1]))
  names = [f'block{b}_conv{i}' for b, n in enumerate(BLOCK_SIZES, 1) for i in range(1, n + 1)]
  out = []
  for name, key in zip(names, conv_keys):
    out.append((name, [state[key].transpose(2, 3, 1, 0), state[key[: -len('weight')] + 'bias']]))
  w6 = state['classifier.0.weight']
  channels = state[conv_keys[-1]].shape[0]
  side = IMAGE_SIZE // 32
  fc1 = w6.reshape(-1, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, w6.shape[0])
  out.append(('fc1', [fc1, state['classifier.0.bias']]))
  out.append(('fc2', [state['classifier.3.weight'].T, state['classifier.3.bias']]))
  out.append(('predictions', [state['classifier.6.weight'].T, state['classifier.6.bias']]))
  return out


def write_keras_h5(path: str, layers, *, keras2: bool) -> None:
  """The keras-applications file layout (`keras2=False`) or Keras 2's save_weights layout."""
  import h5py

  names = ['input_1']
  for b, n in enumerate(BLOCK_SIZES, 1):
    names += [f'block{b}_conv{i}' for i in range(1, n + 1)] + [f'block{b}_pool']
  names += ['flatten', 'fc1', 'fc2', 'predictions']
  weights = dict(layers)
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [n.encode() for n in names]
    f.attrs['keras_version'] = b'2.1.5' if keras2 else b'1.1.0'
    f.attrs['backend'] = b'tensorflow'
    for name in names:
      g = f.create_group(name)
      if name not in weights:
        g.attrs['weight_names'] = []
        continue
      if keras2:
        weight_names = [f'{name}/kernel:0', f'{name}/bias:0']
      else:
        weight_names = [f'{name}_W_1:0', f'{name}_b_1:0']
      g.attrs['weight_names'] = [w.encode() for w in weight_names]
      for w, value in zip(weight_names, weights[name]):
        g.create_dataset(w, data=np.asarray(value, np.float32))


def keras_outputs(path: str, widths, images: np.ndarray) -> dict[str, np.ndarray]:
  import keras

  x = inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
  for b, block in enumerate(widths, 1):
    for i, w in enumerate(block, 1):
      x = keras.layers.Conv2D(
          w, (3, 3), activation='relu', padding='same', name=f'block{b}_conv{i}'
      )(x)
    x = keras.layers.MaxPooling2D((2, 2), strides=(2, 2), name=f'block{b}_pool')(x)
  x = keras.layers.Flatten(name='flatten')(x)
  x = keras.layers.Dense(FC, activation='relu', name='fc1')(x)
  x = keras.layers.Dense(FC, activation='relu', name='fc2')(x)
  x = keras.layers.Dense(NUM_CLASSES, name='predictions')(x)  # logits: no softmax
  model = keras.Model(inputs, x)
  model.load_weights(path)  # Keras' own reader of legacy .h5 weight files
  probe = keras.Model(
      inputs, [model.get_layer('block5_conv3').output, model.get_layer('fc1').output, model.output]
  )
  pre = keras.applications.vgg16.preprocess_input(images.astype(np.float32))
  conv5_3, fc6, logits = (keras.ops.convert_to_numpy(t) for t in probe(pre))
  return {'logits': logits, 'conv5_3': conv5_3, 'fc6': fc6}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      '--out', default=os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')
  )
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  import torch

  os.makedirs(args.out, exist_ok=True)
  out = lambda name: os.path.join(args.out, name)

  model = torch_network(args.seed)
  torch.save(model.state_dict(), out('vgg16_narrow_torchvision.pth'))
  torch.save(
      model.state_dict(),
      out('vgg16_narrow_torchvision_legacy.pth'),
      _use_new_zipfile_serialization=False,
  )
  images = np.random.default_rng(args.seed).integers(
      0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8
  )
  reference = {'images': images}
  reference.update({f'torchvision_{k}': v for k, v in torch_outputs(model, images).items()})

  state = {k: v.numpy() for k, v in model.state_dict().items()}
  layers = keras_layers(state)
  convs = iter(w[0].shape[-1] for _, w in layers[:13])
  widths = [[next(convs) for _ in range(n)] for n in BLOCK_SIZES]
  write_keras_h5(out('vgg16_narrow_keras.h5'), layers, keras2=False)
  write_keras_h5(out('vgg16_narrow_keras2.h5'), layers, keras2=True)
  keras_ref = keras_outputs(out('vgg16_narrow_keras.h5'), widths, images)
  keras2_ref = keras_outputs(out('vgg16_narrow_keras2.h5'), widths, images)
  for k in keras_ref:
    np.testing.assert_array_equal(keras_ref[k], keras2_ref[k])
  reference.update({f'keras_{k}': v for k, v in keras_ref.items()})
  np.savez_compressed(out('vgg16_narrow_reference.npz'), **reference)
  for name in sorted(os.listdir(args.out)):
    print(f'{name}: {os.path.getsize(out(name))} bytes')
  for k, v in sorted(reference.items()):
    print(f'  {k}: {v.shape} {v.dtype} max |x| {np.abs(v.astype(np.float64)).max():.3g}')


if __name__ == '__main__':
  main()
