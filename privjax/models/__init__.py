"""Split models: `SplitModel(arch, cut, num_classes, rngs=...)` with `.extractor` and `.head`.

What lives here: `vgg` (the architectures, the split model and its layers), `pretrained` (imported
VGG-16 weight files) and `weight_formats` (those files' kinds and input normalisations, without
jax). The names of `vgg` below are this package's own (`models.SplitModel`, ...); they, like the
modules, are loaded when first used, so that config files can read `weight_formats` without jax.

Nothing in this package may import privjax.train, privjax.data or privjax.config: models sit below
them (their errors come from privjax.errors).
"""

import importlib

# The names of privjax.models.vgg that this package exports.
_VGG = (
    'ARCHITECTURES',
    'SplitModel',
    'build_head',
    'check_cut',
    'feature_shape',
    'get_architecture',
    'layer_params',
    'load_layer_params',
    'model_from_config',
)
_MODULES = ('pretrained', 'vgg', 'weight_formats')
__all__ = [*_VGG, *_MODULES]


def __getattr__(name: str):
  if name in _VGG:
    return getattr(importlib.import_module(f'{__name__}.vgg'), name)
  if name in _MODULES:
    return importlib.import_module(f'{__name__}.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return __all__
