r"""Frozen ImageNet VGG-16 features against raw pixels: a linear probe of gender on real photos.

  python benchmarks/imagenet_probe.py \
      --config configs/lfw_photos.py:csv=/work/shared/data/lfw_faces/labels.csv \
      [--size 64|112] [--weights imagenet,random] [--layers pool3,conv4_3,...]

VGG-16 (`vgg16_64` / `vgg16_112`) with the installed ImageNet convolutions
(`model.pretrained = 'imagenet'`) and, as a control, the same network freshly initialised, run
frozen on the owner's photos. privjax.attacks.linear's probe (L2 chosen on a stratified val part
of the train split, seed 0) is fitted on the owner's train split and scored on the owner's test
split, whose identities are disjoint from the train split's. Prints top-1 with its binomial
standard error per layer, and the majority-class rate of the test split.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from privjax import config_args
from privjax.attacks import linear
from privjax.data import pipeline
from privjax.metrics import classification
from privjax.models import pretrained, vgg

LAYERS = ('pool3', 'conv4_3', 'pool4', 'conv5_3', 'pool5')


def _images(split) -> np.ndarray:
  return np.stack([np.asarray(split.source[i]['image']) for i in range(len(split))])


def _features(model, images, layers, batch=64) -> dict[str, np.ndarray]:
  """The outputs of `layers` for `images`, flattened, in batches (one compiled function)."""

  @jax.jit
  def run(x):
    out = {}
    for name in model.extractor.names:
      x = getattr(model.extractor, name)(x)
      if name in layers:
        out[name] = x.reshape(x.shape[0], -1)
    return out

  parts = []
  for start in range(0, len(images), batch):
    chunk = images[start : start + batch]
    pad = batch - len(chunk)
    x = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    out = run(x.astype(np.float32))
    parts.append({k: np.asarray(v[: len(chunk)]) for k, v in out.items()})
  return {k: np.concatenate([p[k] for p in parts]) for k in layers}


def _probe(x_train, y_train, x_test, y_test) -> tuple[float, float]:
  attacker = linear.fit_linear(x_train, y_train, seed=0)
  correct = attacker.predict(x_test) == y_test
  top1 = float(correct.mean())
  return top1, float(classification.binomial_se(top1, len(y_test)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--size', type=int, default=64, choices=(64, 112))
  parser.add_argument(
      '--weights', default='imagenet,random', help='comma-separated: imagenet, random (init)'
  )
  parser.add_argument(
      '--layers', default=','.join(LAYERS), help='comma-separated, of ' + ', '.join(LAYERS)
  )
  args = parser.parse_args()
  layers = tuple(args.layers.split(','))
  for name, given, valid in (
      ('weights', args.weights.split(','), ('imagenet', 'random')),
      ('layers', layers, LAYERS),
  ):
    if set(given) - set(valid):
      parser.error(f'--{name} takes {", ".join(valid)}, got {",".join(given)}')
  config = config_args.load(args.config)
  config.model.image_size = args.size
  builder = pipeline.get_builder(config.dataset)
  label = config.dataset.primary
  train = pipeline.load_split(builder, config.dataset.train_split)
  test = pipeline.load_split(builder, config.dataset.test_split)
  x_train, x_test = _images(train), _images(test)
  y_train, y_test = train.labels[label], test.labels[label]
  majority = max(np.mean(y_test == c) for c in np.unique(y_test))
  print(
      f'{label}: {len(y_train)} train / {len(y_test)} test photos at {args.size}x{args.size}; '
      f'majority class of the test split {100 * majority:.1f}%',
      flush=True,
  )
  rows = [
      (
          'raw pixels',
          'pixels',
          x_train.size // len(x_train),
          *_probe(x_train, y_train, x_test, y_test),
      )
  ]
  print(rows[-1], flush=True)
  for weights in args.weights.split(','):
    model = vgg.SplitModel(
        f'vgg16_{args.size}',
        'pool5',
        2,
        rngs=nnx.Rngs(0),
        **pretrained.normalization_for('imagenet'),
    )
    if weights == 'imagenet':
      pretrained.load_pretrained(model, 'imagenet', verbose=False)
    start = time.perf_counter()
    f_train, f_test = _features(model, x_train, layers), _features(model, x_test, layers)
    print(f'{weights}: features in {time.perf_counter() - start:.0f} s', flush=True)
    for layer in layers:
      rows.append(
          (
              'random init' if weights == 'random' else weights,
              layer,
              f_train[layer].shape[1],
              *_probe(f_train[layer], y_train, f_test[layer], y_test),
          )
      )
      print(rows[-1], flush=True)
  print('\n| weights | layer | dimensions | gender top-1 (%) |\n|---|---|---|---|')
  for weights, layer, dims, top1, se in rows:
    print(f'| {weights} | {layer} | {dims} | {100 * top1:.1f} ± {100 * se:.1f} |')


if __name__ == '__main__':
  main()
