"""Frozen cut features of a trained run: restore, extract (jit, batched) and cache.

What lives here: `load_run` (a run's config, parameters and model from its orbax checkpoint, nothing
else), `extract` (features, logits and labels of one split, cached on disk under
`RUN/eval/cache/step_<S>/<split>.npz` so a second evaluation does not recompute them; the run
directory may be a URI, privjax.paths), `feature_batches` (the same features a batch at a time, for
splits too large to hold: privjax.evaluate.sources writes them to shards), `feature_bytes` (a
split's float32 feature size) and `split_images` (the raw pixels, the attacker's reference input).
Must not import privjax.attacks or privjax.report: features flow from here to them.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import zipfile
import zlib

import jax
import ml_collections
import numpy as np
from flax import nnx

from privjax import defences, models, paths
from privjax.data import pipeline
from privjax.train import checkpoint as ckpt_lib

try:
  from tqdm import auto as tqdm  # a notebook widget in Jupyter and Colab, text elsewhere
except ImportError:
  tqdm = None


@dataclasses.dataclass
class Run:
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  model: models.SplitModel
  defence: dict  # the defence's name and summary at this checkpoint (e.g. its margin)
  builder: object

  @property
  def cache_dir(self) -> str:
    return paths.join(self.workdir, 'eval', 'cache', f'step_{self.step}')

  def features(self, split: str) -> dict:
    """`extract(self, split)`: {'features': [N, *cut_shape], 'logits', <label>: [N] ...}."""
    return extract(self, split)


def load_run(workdir: str, step: int | None = None, *, data_dir: str | None = None) -> Run:
  """Restores the parameters and config of `workdir` at `step` (default: latest)."""
  step, params, meta, config_dict = ckpt_lib.restore_run(workdir, step)
  config = ml_collections.ConfigDict(config_dict)
  if data_dir is not None:
    config.dataset.data_dir = data_dir
  builder = pipeline.get_builder(config.dataset)
  pipeline.check_run_data(config, builder, run=workdir)
  num_classes = pipeline.label_num_classes(builder, config.dataset.primary)
  context = defences.context_for(config, pipeline.label_classes(builder))
  model, defence = defences.model_from_config(config, num_classes, context, rngs=nnx.Rngs(0))
  nnx.update(model, nnx.State(params))
  return Run(workdir, step, config, model, {'name': defence.name, **meta['defence']}, builder)


def _progress(iterable, total, desc):
  return (
      tqdm.tqdm(iterable, total=total, desc=desc, unit='batch', leave=False) if tqdm else iterable
  )


def extract(run: Run, split: str, *, batch_size: int | None = None, cache: bool = True) -> dict:
  """{'features': [N, *cut_shape] float32, 'logits': [N, C], <label>: [N] ...} for `split`."""
  path = paths.as_path(paths.join(run.cache_dir, f'{split}.npz'))
  if cache and path.exists():
    data = read_cache(path, _load_npz)
    if data is not None:
      return data
  data = load_split_features(
      run.model,
      run.config,
      pipeline.load_split(run.builder, split),
      batch_size=batch_size or run.config.eval_batch_size,
  )
  if cache and jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **data)
    paths.write_atomic(path, buffer.getvalue())  # a reader never sees part of a cache file
  return data


# What a cache file cut short or overwritten with other bytes raises when it is read.
DAMAGED_CACHE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _load_npz(path) -> dict:
  with np.load(io.BytesIO(paths.as_path(path).read_bytes())) as data:
    return dict(data)


def read_cache(path, load):
  """`load(path)` of a cache file privjax wrote (features, a fitted PCA); None, with a one-line
  warning that names it, when it is damaged: the caller computes it again and writes it over."""
  try:
    return load(path)
  except FileNotFoundError:
    return None
  except DAMAGED_CACHE as e:
    logging.warning('cache %s is damaged (%s: %s); computing it again', path, type(e).__name__, e)
    return None


def feature_bytes(run: Run, split: str) -> int:
  """The float32 size of `split`'s cut features, without extracting them."""
  arch = models.get_architecture(run.config.model.arch)
  dim = int(np.prod(models.feature_shape(arch, run.config.model.cut)))
  return run.builder.info.splits[split].num_examples * dim * 4


def feature_batches(model, config, split: pipeline.Split, *, batch_size: int):
  """(features [b, *cut_shape] float32, logits [b, C] float32) per batch of `split`, in order.

  The same values as `load_split_features` (same batches, same per-batch random keys), a batch
  at a time.
  """
  graphdef, params = nnx.split(model)

  @jax.jit
  def features_and_logits(params, images, rng):
    return nnx.merge(graphdef, params).features_and_logits(images, rng=rng)

  preprocess = pipeline.preprocess_from_config(config, train=False)
  batches = pipeline.eval_batches(split, batch_size, preprocess, threads=config.data_threads)
  num_batches = -(-len(split) // batch_size)
  # The device's random draws (learned noise) from a key fixed per split and batch: a feature
  # cache is one upload of each image, the same on every evaluation.
  key = jax.random.fold_in(jax.random.key(config.seed + 2), zlib.crc32(split.name.encode()))
  for i, batch in enumerate(_progress(batches, num_batches, f'features {split.name}')):
    f, l = features_and_logits(params, batch['image'], jax.random.fold_in(key, i))
    keep = np.asarray(batch['mask'])
    yield np.asarray(f, np.float32)[keep], np.asarray(l, np.float32)[keep]


def load_split_features(model, config, split: pipeline.Split, *, batch_size: int) -> dict:
  features, logits = [], []
  for f, l in feature_batches(model, config, split, batch_size=batch_size):
    features.append(f)
    logits.append(l)
  out = {'features': np.concatenate(features), 'logits': np.concatenate(logits)}
  out.update({k: np.asarray(v) for k, v in split.labels.items()})
  return out


def split_images(builder, config, split: str) -> np.ndarray:
  """All images of `split`, preprocessed as for evaluation: uint8 [N, S, S, 3]."""
  data = pipeline.load_split(builder, split)
  preprocess = pipeline.preprocess_from_config(config, train=False)
  return np.stack([preprocess(data.source[i]['image'], None) for i in range(len(data))])
