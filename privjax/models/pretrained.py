"""Pretrained VGG-16 weights from a torchvision `.pth` or a Keras `.h5` file, or the installed
ImageNet convolutions (`imagenet`, privjax.models.imagenet_weights), as privjax layers.

What lives here: a reader for each file type (torch's zip and legacy pickle formats read without
torch, by an unpickler that builds nothing but tensors and dicts; Keras files with h5py), their
mapping to privjax layer names and layouts, the input normalisation each source was trained with
(`normalization_for`), `vgg16_like` (a VGG-16-shaped architecture with the widths found in a file),
`load_pretrained(model, path)`, `check_config` (the training loop's early check of
config.model.pretrained) and `model_from_file` (the file's own network, e.g. the test fixtures').

Layouts: torch convs are OIHW and Linear weights [out, in]; Keras convs are HWIO and Dense kernels
[in, out], as privjax's. torchvision flattens pool5 in (C, H, W) order, privjax and Keras
(channels_last) in (H, W, C) order, so fc6's input rows are permuted for torchvision files.

Must not import privjax.train, privjax.data or privjax.config (its errors come from privjax.errors);
never imports torch, and h5py only to read .h5 files.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pickle
import zipfile

import jax
import ml_dtypes
import numpy as np
from flax import nnx

from privjax.errors import PretrainedError
from privjax.models import imagenet_weights, vgg
from privjax.models.weight_formats import NAMED, SUFFIXES, normalization_for, source_for  # noqa: F401

BLOCK_SIZES = (2, 2, 3, 3, 3)  # convolutions per block in VGG-16 (configuration D)
CONV_NAMES = tuple(
    f'conv{b}_{i}' for b, n in enumerate(BLOCK_SIZES, start=1) for i in range(1, n + 1)
)


def vgg16_like(widths, fc, image_size: int, name: str = 'vgg16_like') -> vgg.Architecture:
  """VGG-16's layers and valid cuts with other widths (`widths[b]`: block b's conv widths)."""
  if tuple(len(w) for w in widths) != BLOCK_SIZES:
    raise PretrainedError(f'a VGG-16 has {BLOCK_SIZES} convolutions per block, got widths {widths}')
  return vgg._architecture(name, image_size, widths, fc, first_cut='conv4_1', default_cut='conv5_3')


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """What a weight file holds, in privjax terms."""

  path: str
  source: str
  params: dict[str, dict]  # layer name → pure dict, as `vgg.layer_params` returns
  widths: tuple[tuple[int, ...], ...]
  fc: tuple[int, ...]  # widths of fc6, fc7; () when the file has no classifier block
  num_classes: int | None
  image_size: int | None  # the input size fc6 was trained for (32 x pool5's side)

  def architecture(self) -> vgg.Architecture:
    if not self.fc:
      raise PretrainedError(f'{self.path} has no fully connected layers; its input size is unknown')
    is_vgg16 = (self.widths, self.fc, self.image_size) == _VGG16_SHAPE
    return vgg16_like(
        self.widths, self.fc, self.image_size, name='vgg16' if is_vgg16 else 'vgg16_like'
    )


def _vgg16_shape():
  arch = vgg.ARCHITECTURES['vgg16']
  convs = iter(spec.features for spec in arch.layers if spec.kind == 'conv')
  widths = tuple(tuple(next(convs) for _ in range(n)) for n in BLOCK_SIZES)
  fc = tuple(spec.features for spec in arch.layers if spec.kind == 'dense')
  return widths, fc, arch.image_size


_VGG16_SHAPE = _vgg16_shape()


# ---- torch files, without torch ----

_TORCH_DTYPES = {
    'FloatStorage': np.float32,
    'DoubleStorage': np.float64,
    'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ShortStorage': np.int16,
    'CharStorage': np.int8,
    'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER


@dataclasses.dataclass
class _StorageType:
  dtype: np.dtype


class _Storage:
  """A torch storage, its bytes filled in after unpickling (the legacy format stores them last)."""

  def __init__(self, dtype, numel: int, root: '_Storage | None' = None, offset: int = 0):
    self.dtype, self.numel, self.root, self.offset = np.dtype(dtype), numel, root, offset
    self.data = None

  def array(self) -> np.ndarray:
    if self.root is not None:
      return self.root.array()[self.offset : self.offset + self.numel]
    return self.data


@dataclasses.dataclass
class _TensorRef:
  storage: _Storage
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]

  def array(self, path: str) -> np.ndarray:
    flat = self.storage.array()
    last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride) if n > 0)
    if min(self.shape, default=1) > 0 and (
        self.offset < 0 or last >= flat.size or min(self.stride, default=0) < 0
    ):
      raise PretrainedError(f'{path}: a tensor reaches outside its storage; the file is damaged')
    if min(self.shape, default=1) == 0:
      return np.zeros(self.shape, flat.dtype)
    return np.lib.stride_tricks.as_strided(
        flat[self.offset :], self.shape, tuple(s * flat.itemsize for s in self.stride)
    ).copy()


def _rebuild_tensor(storage, offset, shape, stride, *unused):
  return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(data, *unused):
  return data


class _TorchUnpickler(pickle.Unpickler):
  """Builds only dicts, tensors and storages; any other class in the file is refused."""

  def __init__(self, file, path: str, storages: dict):
    super().__init__(file)
    self.path, self.storages = path, storages

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch._utils' and name in ('_rebuild_tensor', '_rebuild_tensor_v2'):
      return _rebuild_tensor
    if (module, name) == ('torch._utils', '_rebuild_parameter'):
      return _rebuild_parameter
    if module in ('torch', 'torch.cuda') and name in _TORCH_DTYPES:
      return _StorageType(np.dtype(_TORCH_DTYPES[name]))
    raise PretrainedError(
        f'{self.path} holds a {module}.{name}, not just tensors; save the '
        'weights with torch.save(model.state_dict(), path)'
    )

  def persistent_load(self, pid):
    kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
    if kind != 'storage':
      raise PretrainedError(f'{self.path} holds a pickled {kind}; save model.state_dict() instead')
    storage_type, key, _, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    key = str(key)
    if key not in self.storages:
      self.storages[key] = _Storage(storage_type.dtype, int(numel))
    storage = self.storages[key]
    if view is not None:  # legacy format: a view (key, offset, size) into a root storage
      view_key, offset, size = view
      storage = self.storages.setdefault(
          str(view_key), _Storage(storage.dtype, int(size), storage, int(offset))
      )
    return storage


def _tensors_to_arrays(obj, path):
  if isinstance(obj, _TensorRef):
    return obj.array(path)
  if isinstance(obj, dict):
    return {k: _tensors_to_arrays(v, path) for k, v in obj.items()}
  return obj


def _storage_data(storage: _Storage, raw: bytes, path: str) -> np.ndarray:
  if len(raw) != storage.numel * storage.dtype.itemsize:
    raise PretrainedError(f'{path} ends early or its storage sizes disagree; the file is damaged')
  return np.frombuffer(raw, storage.dtype)


def _read_torch_zip(path: str) -> dict:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pickles = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pickles) != 1:
      raise PretrainedError(f'{path} is a zip file but not a torch.save archive (no data.pkl)')
    prefix = pickles[0][: -len('data.pkl')]
    if f'{prefix}byteorder' in names and z.read(f'{prefix}byteorder').strip() != b'little':
      raise PretrainedError(f'{path} was saved on a big-endian machine; re-save it on this one')
    storages = {}
    with z.open(pickles[0]) as f:
      obj = _TorchUnpickler(f, path, storages).load()
    for key, storage in storages.items():
      if storage.root is None:
        storage.data = _storage_data(storage, z.read(f'{prefix}data/{key}'), path)
  return obj


def _read_torch_legacy(path: str) -> dict:
  """torch.save before 1.6 (and with _use_new_zipfile_serialization=False): the format of the
  torchvision model-zoo VGG-16 file. Pickles of the magic number, protocol version, system info,
  the object and its storage keys, then each storage as an int64 element count and raw bytes."""
  storages = {}
  with open(path, 'rb') as f:
    try:
      magic = _TorchUnpickler(f, path, storages).load()
    except Exception:  # whatever the first bytes are, they are not torch's magic number
      magic = None
    if magic != _LEGACY_MAGIC:
      raise PretrainedError(f'{path} is neither a torch zip archive nor a legacy torch.save file')
    _TorchUnpickler(f, path, storages).load()  # protocol version
    info = _TorchUnpickler(f, path, storages).load()
    if not info.get('little_endian', True):
      raise PretrainedError(f'{path} was saved on a big-endian machine; re-save it on this one')
    obj = _TorchUnpickler(f, path, storages).load()
    keys = _TorchUnpickler(f, path, storages).load()
    for key in keys:
      storage = storages[str(key)]
      count = f.read(8)
      if len(count) < 8 or int.from_bytes(count, 'little') != storage.numel:
        raise PretrainedError(
            f'{path} ends early or its storage sizes disagree; the file is ' 'damaged'
        )
      storage.data = _storage_data(storage, f.read(storage.numel * storage.dtype.itemsize), path)
  return obj


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """{key: array} from a file written by torch.save(state_dict) in either of torch's formats."""
  try:
    obj = _read_torch_zip(path) if zipfile.is_zipfile(path) else _read_torch_legacy(path)
  except (pickle.UnpicklingError, EOFError, KeyError, zipfile.BadZipFile) as e:
    raise PretrainedError(
        f'cannot read {path} ({type(e).__name__}: {e}); the file is damaged'
    ) from None
  if not isinstance(obj, dict):
    raise PretrainedError(f'{path} holds a {type(obj).__name__}, not a state_dict')
  return _tensors_to_arrays(obj, path)


def _torchvision_params(state: dict[str, np.ndarray], path: str):
  if 'features.1.running_mean' in state:
    raise PretrainedError(f'{path} is a batch-norm VGG (vgg16_bn); only plain VGG-16 is supported')
  params, widths, block, k = {}, [], [], 0
  for n in BLOCK_SIZES:
    for _ in range(n):
      name = CONV_NAMES[len(params)]
      w, bias = _pair(state, f'features.{k}', path)
      params[name] = {'conv': {'kernel': w.transpose(2, 3, 1, 0), 'bias': bias}}  # OIHW → HWIO
      block.append(w.shape[0])
      k += 2  # Conv2d, ReLU
    widths.append(tuple(block))
    block = []
    k += 1  # MaxPool2d
  fc, num_classes, image_size = (), None, None
  if 'classifier.0.weight' in state:
    w6, b6 = _pair(state, 'classifier.0', path)
    channels = widths[-1][-1]
    side = _pool5_side(w6.shape[1], channels, path, 'classifier.0')
    # Rows of a (C, H, W) flatten → rows of an (H, W, C) flatten.
    kernel6 = w6.reshape(-1, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, w6.shape[0])
    w7, b7 = _pair(state, 'classifier.3', path)
    w8, b8 = _pair(state, 'classifier.6', path)
    params['fc6'] = {'linear': {'kernel': kernel6, 'bias': b6}}
    params['fc7'] = {'linear': {'kernel': w7.T, 'bias': b7}}
    params['classifier'] = {'linear': {'kernel': w8.T, 'bias': b8}}
    fc, num_classes, image_size = (w6.shape[0], w7.shape[0]), w8.shape[0], 32 * side
  return params, tuple(widths), fc, num_classes, image_size


def _pool5_side(inputs: int, channels: int, path: str, layer: str) -> int:
  side = math.isqrt(inputs // channels)
  if side * side * channels != inputs:
    raise PretrainedError(
        f'{path}: {layer} takes {inputs} inputs, not the {channels} channels of ' 'a square pool5'
    )
  return side


def _pair(state, prefix, path):
  missing = [k for k in (f'{prefix}.weight', f'{prefix}.bias') if k not in state]
  if missing:
    raise PretrainedError(
        f'{path} is not a torchvision VGG-16 state_dict: it has no {missing[0]} '
        f'(keys: {", ".join(list(state)[:4])}, ...)'
    )
  return (
      np.asarray(state[f'{prefix}.weight'], np.float32),
      np.asarray(state[f'{prefix}.bias'], np.float32),
  )


# ---- Keras files ----


def _keras_layer_arrays(group, name: str, path: str) -> tuple[np.ndarray, np.ndarray]:
  """(kernel, bias) of one layer group, whatever the Keras version named the datasets:
  `block1_conv1_W_1:0` (the keras-applications VGG-16 file), `block1_conv1/kernel:0` (Keras 2)."""
  import h5py

  arrays = []
  group[name].visititems(
      lambda _, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None
  )
  kernels = [a for a in arrays if a.ndim in (2, 4)]
  biases = [a for a in arrays if a.ndim == 1]
  if len(kernels) != 1 or len(biases) != 1 or len(arrays) != 2:
    raise PretrainedError(
        f'{path}: layer {name} holds {[a.shape for a in arrays]}, not one kernel ' 'and one bias'
    )
  return np.asarray(kernels[0], np.float32), np.asarray(biases[0], np.float32)


def _keras_params(path: str):
  try:
    import h5py
  except ImportError:
    raise PretrainedError('reading Keras .h5 weights needs h5py: pip install h5py') from None
  with h5py.File(path, 'r') as f:
    root = f['model_weights'] if 'model_weights' in f else f  # a whole saved model
    if 'block1_conv1' not in root:
      raise PretrainedError(
          f'{path} is not a Keras VGG16 weights file: it has no block1_conv1 '
          f'group (it has: {", ".join(list(root)[:5])}); Keras 3 .weights.h5 '
          'files are not supported'
      )
    params, widths, block = {}, [], []
    for b, n in enumerate(BLOCK_SIZES, start=1):
      for i in range(1, n + 1):
        kernel, bias = _keras_layer_arrays(root, f'block{b}_conv{i}', path)
        params[f'conv{b}_{i}'] = {'conv': {'kernel': kernel, 'bias': bias}}
        block.append(kernel.shape[-1])
      widths.append(tuple(block))
      block = []
    fc, num_classes, image_size = (), None, None
    if 'fc1' in root:
      # channels_last Flatten: the rows are already in privjax's (H, W, C) order.
      for ours, theirs in (('fc6', 'fc1'), ('fc7', 'fc2'), ('classifier', 'predictions')):
        kernel, bias = _keras_layer_arrays(root, theirs, path)
        params[ours] = {'linear': {'kernel': kernel, 'bias': bias}}
      side = _pool5_side(params['fc6']['linear']['kernel'].shape[0], widths[-1][-1], path, 'fc1')
      fc = (params['fc6']['linear']['bias'].shape[0], params['fc7']['linear']['bias'].shape[0])
      num_classes, image_size = params['classifier']['linear']['bias'].shape[0], 32 * side
  return params, tuple(widths), fc, num_classes, image_size


def read(path: str) -> Pretrained:
  """The weights in `path` (.pth/.pt: torchvision state_dict; .h5/.hdf5: Keras VGG16 weights;
  `imagenet`: the installed ImageNet convolutions, without fully connected layers)."""
  source = source_for(path)
  if source == 'imagenet':
    file = imagenet_weights.checkpoint_path()
    params = imagenet_weights.vgg16_params(imagenet_weights.read_checkpoint(file), file)
    widths = tuple(
        tuple(params[f'conv{b}_{i}']['conv']['bias'].shape[0] for i in range(1, n + 1))
        for b, n in enumerate(BLOCK_SIZES, start=1)
    )
    return Pretrained(file, source, params, widths, (), None, None)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'pretrained weights {path} do not exist')
  if source == 'torchvision':
    parts = _torchvision_params(read_torch_state_dict(path), path)
  else:
    parts = _keras_params(path)
  return Pretrained(path, source, *parts)


def _shapes(tree) -> list[tuple[int, ...]]:
  return [tuple(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)]


def _plan(weights: Pretrained, targets: dict[str, dict], arch: str, num_classes: int):
  """(layers to copy, notes on those that keep their initialisation); refuses another network.

  A classifier with another number of classes, and layers the file lacks, keep their fresh
  initialisation; any other shape difference is refused.
  """
  usable, notes = {}, []
  for name, target in targets.items():
    source = weights.params.get(name)
    if source is None:
      notes.append(f'{name} (not in the file)')
    elif _shapes(source) == _shapes(target):
      usable[name] = source
    elif name == 'classifier':
      notes.append(f'classifier ({weights.num_classes} classes in the file, {num_classes} here)')
    else:
      raise PretrainedError(
          f'{weights.path}: layer {name} has shapes {_shapes(source)} in the file but '
          f'{_shapes(target)} in {arch}; the file holds another network'
      )
  return usable, notes


def load_pretrained(
    model: vgg.SplitModel, weights: str | Pretrained, *, verbose: bool = True
) -> tuple[list[str], list[str]]:
  """Copies the file's layers into `model`; returns (loaded, not loaded) layer names.

  A classifier with another number of classes, and layers the file lacks, keep their fresh
  initialisation (and are printed as such); any other shape difference is refused.
  """
  weights = read(weights) if isinstance(weights, str) else weights
  usable, notes = _plan(weights, vgg.layer_params(model), model.arch, model.num_classes)
  loaded, skipped = vgg.load_layer_params(model, usable)
  if verbose:
    print(
        f'pretrained {weights.path} ({weights.source}): loaded {", ".join(loaded)}'
        + (f'; re-initialised {", ".join(notes)}' if notes else ''),
        flush=True,
    )
  return loaded, skipped


def check_config(config, num_classes: int) -> Pretrained:
  """The weights of config.model.pretrained, once they are known to fit the configured model and
  config.input is their normalisation; raises before anything is built or written otherwise."""
  path = config.model.pretrained
  source = source_for(path)
  expected = normalization_for(source)
  given = {
      'mean': tuple(config.input.mean),
      'std': tuple(config.input.std),
      'channel_order': config.input.channel_order,
  }
  same = given['channel_order'] == expected['channel_order'] and all(
      np.allclose(given[k], expected[k], rtol=1e-6, atol=0) for k in ('mean', 'std')
  )
  if not same:
    raise PretrainedError(
        f'input normalisation {given} differs from the one {source} weights were trained with '
        f'({expected}); set config.input from privjax.models.pretrained.normalization_for('
        f'{source!r}) (configs/paper/vgg16.py does)'
    )
  if source not in NAMED and not os.path.isfile(path):
    raise FileNotFoundError(
        f'model.pretrained={path} does not exist; download the weights first '
        '(see configs/paper/vgg16.py)'
    )
  weights = read(path)
  shapes = nnx.eval_shape(lambda: vgg.model_from_config(config, num_classes, rngs=nnx.Rngs(0)))
  _plan(weights, vgg.layer_params(shapes), config.model.arch, num_classes)
  return weights


def model_from_file(
    path: str,
    cut: str,
    *,
    rngs: nnx.Rngs | None = None,
    num_classes: int | None = None,
    dtype=None,
    verbose: bool = False,
) -> vgg.SplitModel:
  """A `SplitModel` with the architecture and normalisation of the file, its weights loaded.

  `rngs` initialises the layers the file cannot fill (a classifier for `num_classes` other than
  the file's); when the file fills every layer, none is initialised at all.
  """
  weights = read(path)
  num_classes = num_classes or weights.num_classes

  def build(rngs):
    return vgg.SplitModel(
        weights.architecture(),
        cut,
        num_classes,
        rngs=rngs,
        dtype=dtype,
        **normalization_for(weights.source),
    )

  model = nnx.eval_shape(lambda: build(nnx.Rngs(0)))  # shapes only
  if num_classes != weights.num_classes or not set(weights.params) >= set(vgg.layer_params(model)):
    if rngs is None:
      raise PretrainedError(f'{path} does not fill every layer of the model; pass rngs')
    model = build(rngs)
  load_pretrained(model, weights, verbose=verbose)
  return model
