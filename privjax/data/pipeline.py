"""Input pipelines: TFDS array_record sources read with grain, without TensorFlow.

What lives here: opening a prepared data set split (`load_split`), checking that a run sees the
data it was trained on (`check_run_data`, by the content digests of privjax.data.digest: resuming
and evaluating both call it), per-image preprocessing
(centre crop, resize, random flip; all uint8 on the host, normalisation happens in the model), the
Siamese pair batches for training, padded evaluation batches, and device prefetch.
Must not import TensorFlow, privjax.models or privjax.train: data flows out of here, nothing in.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import itertools
import logging
import os
from typing import Any, Iterator

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import flags
from PIL import Image

from privjax import paths
from privjax.data import digest as digest_lib
from privjax.data.pairs import PairSampler
from privjax.errors import DataError, RunError

# Data sets defined in privjax; importing the module registers the builder with TFDS.
# `generated` ones are prepared on first use (made locally, or from `dataset.manual_dir` files or a
# download, with a one-line error when those are missing); others must be prepared by the user.
BUILDERS = {
    'synthetic_faces': ('privjax.data.synthetic_faces', True),
    'image_folder': ('privjax.data.image_folder', True),
    'celeba_faces': ('privjax.data.celeba', True),
    'lfw_faces': ('privjax.data.lfw', True),
}


def get_builder(dataset_cfg) -> tfds.core.DatasetBuilder:
  name = dataset_cfg.name
  module, generated = BUILDERS.get(name, (None, False))
  if module:
    importlib.import_module(module)
  data_dir = dataset_cfg.data_dir or None
  if data_dir is None:
    check_env_data_dir()
  # Optional: builder parameters (e.g. image_folder's csv) and TFDS's manual-download folder.
  kwargs = dict(dataset_cfg.get('builder_kwargs') or {})
  try:
    builder = tfds.builder(
        f'{name}/{dataset_cfg.config}' if dataset_cfg.config else name, data_dir=data_dir, **kwargs
    )
  except DataError as e:  # a builder's own message about its kwargs, after TFDS's call context
    raise DataError(str(e).split('}": ', 1)[-1]) from None
  except Exception as e:  # TFDS raises several types for unknown names and configs.
    raise DataError(
        f'cannot open data set {name!r} config {dataset_cfg.config!r}: ' f'{str(e).splitlines()[0]}'
    ) from None
  if not builder.is_prepared():
    if not generated:
      raise DataError(
          f'data set {name} is not prepared in {builder.data_dir}; prepare it first '
          '(see docs/data.md)'
      )
    download = tfds.download.DownloadConfig(
        manual_dir=dataset_cfg.get('manual_dir') or None, try_download_gcs=False
    )  # none of ours is on GCS
    builder.download_and_prepare(file_format='array_record', download_config=download)
  return builder


def check_env_data_dir() -> None:
  """A DataError naming TFDS_DATA_DIR (where TFDS keeps data sets when the config names no
  data_dir) when it is set to a path that is not a directory or cannot be created;
  otherwise TFDS's own error would name a folder below it, and not the variable."""
  value = os.environ.get('TFDS_DATA_DIR')
  if not value or not paths.is_local(value):
    return
  path = os.path.abspath(os.path.expanduser(value))
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if existing == path:
    if os.path.isdir(path):
      return  # a read-only one still serves the data sets prepared in it
    problem = 'is not a directory'
  elif not os.path.isdir(existing):
    problem = f'cannot be created: {existing} is not a directory'
  elif not os.access(existing, os.W_OK | os.X_OK):
    problem = f'cannot be created: {existing} is not writable'
  else:
    return
  raise DataError(
      f'TFDS_DATA_DIR={value} {problem}; set it to a directory privjax can write, unset it '
      '(~/tensorflow_datasets), or give --config.dataset.data_dir'
  )


def label_num_classes(builder, key: str) -> int:
  features = builder.info.features
  if key not in features:
    valid = sorted(k for k in features.keys() if k != 'image')
    raise DataError(f'label {key!r} is not in data set {builder.name}; it has: {", ".join(valid)}')
  feature = features[key]
  if hasattr(feature, 'num_classes'):
    return int(feature.num_classes)
  raise DataError(f'label {key!r} of {builder.name} is not a class label')


def label_classes(builder) -> tuple[tuple[str, int], ...]:
  """(label, number of classes) of every class label of the data set."""
  features = builder.info.features
  return tuple(
      (k, int(features[k].num_classes))
      for k in sorted(features.keys())
      if hasattr(features[k], 'num_classes')
  )


_ALLOW = 'dataset.allow_new_data=True'


def _dataset_name(builder) -> str:
  config = getattr(builder, 'builder_config', None)
  return f'{builder.name}/{config.name}' if config is not None else builder.name


def check_run_data(
    config: Any,
    builder,
    *,
    run: str = 'the run',
    action: str = 'evaluate',
    allow_new_data: bool = False,
) -> str | None:
  """The digest of `builder`'s data, after checking it against the one `config` recorded.

  `config` is a run's saved config (a dict or ConfigDict; None for a new run, which records the
  digest returned). A digest that differs is a RunError naming both, unless `allow_new_data` (a
  resumption that continues on the new data: a warning naming both). A run that recorded no digest
  (trained before digests) or a data set without one cannot be checked: a warning says so.
  """
  current = digest_lib.of_builder(builder)
  if config is None:
    return current
  recorded = (config.get('dataset') or {}).get('digest')
  if not recorded or not current:
    logging.warning(
        'cannot check that %s %s the data it was trained on: %s',
        run,
        'resumes on' if action == 'resume' else 'is evaluated on',
        f'data set {_dataset_name(builder)} has no content digest'
        if not current
        else 'it recorded no data digest (trained before privjax recorded them)',
    )
    return current
  if recorded == current:
    return current
  differs = (
      f'{run} was trained on data set digest {recorded}, but {_dataset_name(builder)} has digest '
      f'{current} now (its images, labels or splits changed)'
  )
  if allow_new_data:
    logging.warning('%s; continuing on the new data (%s)', differs, _ALLOW)
    return current
  hint = (
      f'restore the data it was trained on, or set {_ALLOW} to continue on the new data'
      if action == 'resume'
      else f'restore the data it was trained on to {action} it'
  )
  raise RunError(f'cannot {action}: {differs}; {hint}')


@dataclasses.dataclass
class Split:
  """A split's random-access source plus all its labels, read once without decoding images."""

  name: str
  source: object
  labels: dict[str, np.ndarray]
  image_shape: tuple[int, ...]

  def __len__(self):
    return len(self.source)


def load_split(builder, split: str) -> Split:
  if split not in builder.info.splits:
    raise DataError(
        f'split {split!r} is not in {builder.name}; it has: '
        f'{", ".join(sorted(builder.info.splits.keys()))}'
    )
  source = builder.as_data_source(split)
  label_source = builder.as_data_source(split, decoders={'image': tfds.decode.SkipDecoding()})
  keys = [k for k in builder.info.features.keys() if k != 'image']
  columns = collections.defaultdict(list)
  for example in label_source:
    for k in keys:
      columns[k].append(example[k])
  labels = {k: np.asarray(v) for k, v in columns.items()}
  shape = tuple(builder.info.features['image'].shape)
  return Split(split, source, labels, shape)


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Raw decoded image → uint8 [size, size, 3]: optional centre crop, resize, random crop, flip.

  `random_crop` < 1 (training only): a square of a random side in [random_crop, 1] x the image's
  side, at a random position, resized back to `size` (scale and translation augmentation).
  """

  size: int
  resize: bool
  center_crop: float
  flip: bool
  random_crop: float = 1.0

  def __call__(self, image: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, axis=-1)
    h, w = image.shape[:2]
    if self.center_crop < 1.0:
      side = max(1, int(round(min(h, w) * self.center_crop)))
      top, left = (h - side) // 2, (w - side) // 2
      image = image[top : top + side, left : left + side]
      h, w = side, side
    if (h, w) != (self.size, self.size):
      if not self.resize:
        raise DataError(
            f'images are {h}x{w} but the model takes {self.size}x{self.size}; '
            'set --config.input.resize=True or use a data set of that size'
        )
      image = np.asarray(Image.fromarray(image).resize((self.size, self.size), Image.BILINEAR))
    if self.random_crop < 1.0 and rng is not None:
      side = int(round(self.size * rng.uniform(self.random_crop, 1.0)))
      top, left = rng.integers(0, self.size - side + 1, size=2)
      crop = image[top : top + side, left : left + side]
      image = np.asarray(Image.fromarray(crop).resize((self.size, self.size), Image.BILINEAR))
    if self.flip and rng is not None and rng.random() < 0.5:
      image = image[:, ::-1]
    return np.ascontiguousarray(image, dtype=np.uint8)


def preprocess_from_config(config, train: bool) -> Preprocess:
  return Preprocess(
      size=config.model.image_size,
      resize=config.input.resize,
      center_crop=config.input.center_crop,
      flip=train and config.input.flip,
      random_crop=config.input.get('random_crop', 1.0) if train else 1.0,
  )


def check_image_size(split: Split, preprocess: Preprocess) -> None:
  """Fails before training starts, not in a worker thread, when sizes cannot match."""
  h, w = split.image_shape[:2]
  if not preprocess.resize and preprocess.center_crop == 1.0 and (h, w) != (preprocess.size,) * 2:
    raise DataError(
        f'{split.name} images are {h}x{w} but the model takes '
        f'{preprocess.size}x{preprocess.size}; set --config.input.resize=True or use a '
        'data set of that size'
    )


def _read_options(threads: int) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(4, 2 * threads) * 8)


def _iterate(batches: grain.MapDataset, threads: int, workers: int) -> Iterator[dict]:
  """Runs the per-example work on `threads` threads, in each of `workers` processes if > 0.

  Threads share the GIL; worker processes do not. grain gives worker `w` of `n` the batches
  `w::n` and yields them round-robin, so the order (and every batch) is the same for any `n`.
  """
  ds = batches.to_iter_dataset(_read_options(threads))
  if workers:
    if not flags.FLAGS.is_parsed():
      # grain reads its absl flags when it starts workers; a program that never parsed flags (a
      # notebook, a test, a script without absl.app) runs with their defaults.
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
  return iter(ds)


def pair_batches(
    split: Split,
    label_key: str,
    batch_size: int,
    preprocess: Preprocess,
    *,
    seed: int,
    start_step: int = 0,
    num_steps: int | None = None,
    threads: int = 2,
    workers: int = 0,
    rows: tuple[int, int] | None = None,
    extra_labels: tuple[str, ...] = (),
) -> Iterator[dict]:
  """Batches {'image': uint8 [B,2,S,S,3], 'label': [B,2], 'same': [B]} (+ [B,2] `extra_labels`).

  Both images of a pair sit in one row so that a data-parallel shard holds whole pairs; the step
  reshapes to one batch of 2B images.

  Batch `s` depends only on (seed, s), so resuming at `start_step` reproduces the uninterrupted run.
  `rows=(first, count)` yields only those rows of each global batch of `batch_size` (one process's
  share in multi-host training): together the processes load each global batch exactly once.
  `workers` > 0 loads in that many grain worker processes (`mp_prefetch`), each with `threads`
  threads, for when one process's threads cannot decode as fast as the step trains (at 224x224,
  benchmarks/results/pipeline_224.md); the batches are the same as with `workers=0`.
  """
  sampler = PairSampler(split.labels[label_key], seed)
  labels = split.labels[label_key]
  first, count = rows if rows is not None else (0, batch_size)
  stop = None if num_steps is None else (start_step + num_steps) * count

  def load(k):
    i = (k // count) * batch_size + first + k % count  # this process's k-th → global example
    a, b, same = sampler[i]
    rng = np.random.default_rng((seed, int(i), 1))
    extra = tuple((split.labels[k][a], split.labels[k][b]) for k in extra_labels)
    return (
        preprocess(split.source[a]['image'], rng),
        preprocess(split.source[b]['image'], rng),
        labels[a],
        labels[b],
        same,
        extra,
    )

  def collate(items):
    ia, ib, la, lb, same, extra = zip(*items)
    out = {
        'image': np.stack([np.stack(ia), np.stack(ib)], axis=1),
        'label': np.stack([la, lb], axis=1).astype(np.int32),
        'same': np.asarray(same, np.float32),
    }
    for j, k in enumerate(extra_labels):
      out[k] = np.asarray([e[j] for e in extra], np.int32)
    return out

  # A lazily-indexed range keeps the map random-access; grain runs `load` on worker threads (and
  # processes) ahead of the training step.
  ds = grain.MapDataset.range(start_step * count, stop if stop is not None else 2**62)
  ds = ds.map(load).batch(count, drop_remainder=True, batch_fn=collate)
  return _iterate(ds, threads, workers)


def eval_batches(
    split: Split, batch_size: int, preprocess: Preprocess, *, threads: int = 2
) -> Iterator[dict]:
  """Fixed-size batches over a whole split; the last is padded and `mask` marks real examples.

  Fixed shapes mean one compiled evaluation function for every batch.
  """
  n = len(split)

  def load(i):
    return preprocess(split.source[i]['image'], None), i

  def collate(items):
    images, idx = zip(*items)
    idx = np.asarray(idx)
    pad = batch_size - len(images)
    image = np.stack(images)
    if pad:
      image = np.concatenate([image, np.zeros((pad,) + image.shape[1:], image.dtype)])
    out = {
        'image': image,
        'mask': np.arange(batch_size) < len(idx),
        'index': np.concatenate([idx, np.full(pad, -1)]),
    }
    for k, v in split.labels.items():
      out[k] = np.concatenate([v[idx], np.zeros(pad, v.dtype)]).astype(np.int32)
    return out

  ds = grain.MapDataset.range(n).map(load).batch(batch_size, batch_fn=collate)
  return iter(ds.to_iter_dataset(_read_options(threads)))


def prefetch_to_device(iterator: Iterator[dict], size: int, sharding) -> Iterator[dict]:
  """Keeps `size` batches in flight on the device(s); `device_put` is asynchronous."""
  queue = collections.deque()

  def enqueue(n):
    for batch in itertools.islice(iterator, n):
      queue.append(jax.device_put(batch, sharding))

  enqueue(size)
  while queue:
    yield queue.popleft()
    enqueue(1)
