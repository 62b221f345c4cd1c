"""The VGG-16 weight files privjax imports: their kind by file suffix, and the input normalisation
each kind's weights were trained with (in config.input units: pixels 0..255 → (x / 255 - mean) /
std after channel reordering, as `privjax.models.vgg.Normalize` computes).

Read by the weight importer (privjax.models.pretrained) and by config files that name weight files
(configs/paper/vgg16.py), which must stay importable without jax. Must not import jax.
"""

from __future__ import annotations

import os

from privjax.errors import PretrainedError

SUFFIXES = {'.pth': 'torchvision', '.pt': 'torchvision', '.h5': 'keras', '.hdf5': 'keras'}

_NORMALIZATION = {
    # torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms(): RGB, ImageNet statistics.
    'torchvision': {
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
  """'torchvision' or 'keras', from the weight file's suffix."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in SUFFIXES:
    raise PretrainedError(
        f'{path}: unknown weight file type {suffix!r}; expected a torchvision '
        f'state_dict (.pth, .pt) or Keras weights (.h5, .hdf5)'
    )
  return SUFFIXES[suffix]
