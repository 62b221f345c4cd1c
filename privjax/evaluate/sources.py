"""Where the evaluation's features live, and what the cloud receives from them at each setting.

`extract(run, splits, eval_config)` holds every split's frozen cut features in memory, except the
splits whose float32 features exceed `eval_config.memory_budget_gb` (0 or None: every split in
memory): those are extracted batch by batch into a feature store on disk
(privjax.attacks.shards, under the run's feature cache, `eval_config.feature_store_dtype`, reused
by a later evaluation). The attacker's two splits share one store, since a streaming attacker reads
the rows it trains on and the rows it scores from one store.

`Features.setting(transform, pca, variance)` is what the cloud receives from every split at one
setting of the sweep (`Setting.uploaded(split)`): the deployed transform of the features
(PCA-projected when the transform is `pca:k`) and, at a setting with noise, each upload clipped to
L2 norm C, the `clip_percentile` of the owner's transformed training features (the clip that gives
the noise its formal bound, privjax.privacy.dp), plus Gaussian noise of the given variance; a
noiseless setting uploads the transformed features unclipped, as there is nothing to bound. The PCA and C are
fitted once on the owner's training features and cached with the run's features, as the device
would receive them. The noise has one rule whatever the source
(`privjax.privacy.transforms.upload_noise`): row r of a split gets the noise of (eval seed, split,
setting, r), so every pass over a split sees the same uploads, in memory or read from a store in
batches. What `uploaded` returns:
  * an array [N, ...] when the split is in memory, or when the transform is a PCA (its k codes per
    row are small and are projected from the store a batch at a time);
  * `Uploads` (a store read with the noise added, and the split's rows in it) when the split is on
    disk and untransformed: only evaluators that can read a store take it (their module says so).

Must not import privjax.report or privjax.train.loop.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np

from privjax import models, paths
from privjax.attacks import shards
from privjax.data import pipeline
from privjax.errors import ConfigError
from privjax.evaluate import features as features_lib
from privjax.privacy import dp, transforms
from privjax.privacy import pca as pca_lib

ATTACKER_SPLITS = ('attacker_train', 'attacker_test')


def budget_bytes(eval_config) -> int:
  """`memory_budget_gb` in bytes; 0 when unset (everything in memory)."""
  gb = eval_config.get('memory_budget_gb') or 0
  if gb < 0:
    raise ConfigError(f'memory_budget_gb={gb} must be positive (or 0 / None: in memory)')
  return int(gb * (1 << 30))


def oversized(run, splits, budget: int) -> list[str]:
  """The splits whose float32 features exceed `budget` bytes (none when `budget` is 0)."""
  if not budget:
    return []
  return [s for s in splits if features_lib.feature_bytes(run, s) > budget]


@dataclasses.dataclass
class Split:
  """One split's frozen cut features (in memory, or rows of a store), logits and labels."""

  name: str
  labels: dict[str, np.ndarray]
  logits: np.ndarray
  features: np.ndarray | None = None  # [N, *cut_shape] float32, in memory
  store: shards.FeatureStore | None = None  # or on disk: these rows of this store,
  rows: np.ndarray | None = None
  store_splits: tuple[str, ...] = ()  # which holds these splits (store label `split` indexes them)

  @property
  def size(self) -> int:
    return int(len(self.logits))

  @property
  def in_memory(self) -> bool:
    return self.features is not None

  def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(positions, features) of up to `n` rows drawn with `seed`, in row order: a statistic's
    sample that a store can give as well as an array."""
    pos = np.sort(np.random.default_rng(seed).permutation(self.size)[:n])
    if self.in_memory:
      return pos, self.features[pos]
    return pos, self.store.rows(self.rows[pos]).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class NoisyStore:
  """A feature store whose reads add each row's upload noise (float32): what the cloud received
  from the rows of a store at one setting. Row r of the store is row `row[r]` of split
  `split[r]`, and gets that row's noise (`transforms.upload_noise`), whatever the read."""

  store: shards.FeatureStore
  variance: float
  seed: int
  setting: str
  split_names: tuple[str, ...]
  scale: np.ndarray | None = None  # per store row: the clip's factor (None: no clip)

  def __post_init__(self):
    object.__setattr__(self, '_split', self.store.labels('split'))
    object.__setattr__(self, '_row', self.store.labels('row'))

  def __getattr__(self, name):  # feature_shape, dim, num_rows, labels, rows_within ...
    return getattr(self.store, name)

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(np.float32)

  def _noise(self, rows, start=0, stop=None) -> np.ndarray:
    rows = np.asarray(rows, np.int64)
    out = np.empty((rows.size, self.store.dim), np.float32)
    which = self._split[rows]
    for i in np.unique(which):
      at = np.flatnonzero(which == i)
      stream = f'{self.split_names[i]}/{self.setting}'
      out[at] = transforms.upload_noise(
          self.seed, stream, self._row[rows[at]], self.store.dim, self.variance
      )
    return out[:, start:stop]

  def _upload(self, rows, x, start=0, stop=None) -> np.ndarray:
    rows = np.asarray(rows, np.int64)
    if self.scale is not None:
      x *= self.scale[rows][:, None]
    if self.variance:
      x += self._noise(rows, start, stop)
    return x

  def rows(self, rows) -> np.ndarray:
    return self._upload(rows, self.store.rows(rows).astype(np.float32))

  def columns(self, rows, start: int, stop: int, out=None) -> np.ndarray:
    return self._upload(rows, self.store.columns(rows, start, stop, out), start, stop)

  def batches(self, rows, batch_rows: int, *, shuffle_seed: int | None = None):
    rows = np.asarray(rows, np.int64)
    for pos, x in self.store.batches(rows, batch_rows, shuffle_seed=shuffle_seed):
      yield pos, self._upload(rows[pos], x.astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Uploads:
  """A split's uploads at one setting, on disk: `rows` of `store` (reads add the noise)."""

  store: NoisyStore
  rows: np.ndarray

  def __len__(self) -> int:
    return int(self.rows.size)


@dataclasses.dataclass(frozen=True)
class Deployed:
  """The transform the device applies before its noise: a PCA (or none), then the clip to norm C
  (None: no clip)."""

  spec: str
  pca: pca_lib.PCA | None
  clip: float | None

  def apply(self, z) -> np.ndarray:
    """The deployed transform of features [N, ...] (float32)."""
    z = np.asarray(z if self.pca is None else self.pca.apply(z), np.float32)
    return z if self.clip is None else clip_rows(z, self.clip)


def clip_rows(z: np.ndarray, clip: float) -> np.ndarray:
  """Each row of `z` scaled to L2 norm at most `clip` (privjax.privacy.dp.clip_norm, in numpy)."""
  return z * row_scales(np.linalg.norm(z.reshape(len(z), -1), axis=1), clip).reshape(
      (-1,) + (1,) * (z.ndim - 1)
  )


def row_scales(norms: np.ndarray, clip: float) -> np.ndarray:
  """The factor each row's clip multiplies it by: min(1, C / norm)."""
  norms = np.asarray(norms, np.float64)
  return np.where(norms > clip, clip / np.maximum(norms, 1e-30), 1.0).astype(np.float32)


@dataclasses.dataclass
class Setting:
  """One (transform x noise) setting of the sweep: what the cloud receives from every split."""

  transform: str
  noise_variance: float
  deployed: Deployed
  baseline: bool  # the untransformed noiseless setting (else the first)
  features: Features
  _cache: dict = dataclasses.field(default_factory=dict)

  @property
  def pca(self) -> pca_lib.PCA | None:
    return self.deployed.pca

  @property
  def clip(self) -> float | None:
    return self.deployed.clip

  @property
  def name(self) -> str:
    return f'{self.transform}/{self.noise_variance:g}'

  def clean(self, split: str):
    """The split's transformed, noiseless features (array, or the store when untransformed)."""
    key = ('clean', split)
    if key not in self._cache:
      self._cache[key] = self.features.transformed(split, self.deployed)
    return self._cache[key]

  def uploaded(self, split: str):
    """What the device uploads from `split`: transformed, then noised (module docstring)."""
    key = ('noisy', split)
    if key not in self._cache:
      z = self.clean(split)
      seed = self.features.seed
      if isinstance(z, np.ndarray):
        if self.noise_variance:
          flat = z.reshape(len(z), -1)
          noise = transforms.upload_noise(
              seed, f'{split}/{self.name}', np.arange(len(z)), flat.shape[1], self.noise_variance
          )
          z = (flat + noise).reshape(z.shape)
        self._cache[key] = z
      else:
        s = self.features.splits[split]
        scale = self.features.store_scales(s, self.clip)
        noisy = NoisyStore(s.store, self.noise_variance, seed, self.name, s.store_splits, scale)
        self._cache[key] = Uploads(noisy, s.rows)
    return self._cache[key]

  def cut_shaped(self, split: str) -> np.ndarray:
    """The uploads of `split` mapped back to the cut's shape (the transfer attacker's input: it
    re-trains the layers after the cut)."""
    z = self.uploaded(split)
    return z if self.pca is None else np.asarray(self.pca.inverse(z), np.float32)

  def dims(self) -> int:
    """Numbers uploaded per image."""
    return self.pca.k if self.pca is not None else int(np.prod(self.features.feature_shape))


@dataclasses.dataclass
class Features:
  """The frozen cut features of every split of one run, and its fitted transforms."""

  run: object  # features.Run
  splits: dict[str, Split]
  seed: int
  budget: int  # bytes a pass over a store may hold (0: everything is in memory)
  feature_shape: tuple[int, ...]
  _scales: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def from_arrays(cls, splits: dict[str, dict], *, seed: int = 0, run=None) -> Features:
    """In-memory features of hand-made splits: {split: {'features': [N, ...], <label>: [N]}}
    (tests and notebooks; a split without features gets zeros [N, 1], and the logits, which only
    the full model's accuracy reads, are zeros)."""
    out = {}
    for name, d in splits.items():
      labels = {k: np.asarray(v) for k, v in d.items() if k != 'features'}
      n = len(d['features']) if 'features' in d else len(next(iter(labels.values())))
      f = np.asarray(d['features'], np.float32) if 'features' in d else np.zeros((n, 1), np.float32)
      out[name] = Split(name, labels, np.zeros((n, 1), np.float32), features=f)
    return cls(run, out, seed, 0, tuple(next(iter(out.values())).features.shape[1:]))

  @property
  def streamed(self) -> list[str]:
    return [name for name, s in self.splits.items() if not s.in_memory]

  def transformed(self, split: str, deployed: Deployed):
    """The split's deployed transform without noise: an array, or its store when the transform
    keeps the features' size (the clip is then applied as the store is read)."""
    s = self.splits[split]
    if s.in_memory:
      return deployed.apply(s.features)
    if deployed.pca is None:
      return s.store
    z = pca_lib.project(deployed.pca, s.store, s.rows, memory_budget=self.budget)
    return z if deployed.clip is None else clip_rows(z, deployed.clip)

  def store_scales(self, split: Split, clip: float | None) -> np.ndarray | None:
    """The clip's factor for every row of `split`'s store (one pass over it, kept per C)."""
    if clip is None:
      return None
    key = (split.store.directory, clip)
    if key not in self._scales:
      norms = np.zeros(split.store.num_rows, np.float64)
      every = np.arange(split.store.num_rows)
      batch = split.store.rows_within(max(self.budget, 1 << 20) // 2)
      for pos, x in split.store.batches(every, batch):
        norms[pos] = np.linalg.norm(x.astype(np.float32), axis=1)
      self._scales[key] = row_scales(norms, clip)
    return self._scales[key]

  def fit_pca(self, spec: str, train_split: str):
    """The PCA of `spec` (None for 'none') fitted on the owner's training features, cached with
    the run's features (a later evaluation reads it back)."""
    t = transforms.parse_transform(spec)
    if t.kind == 'none':
      return None
    path = paths.join(self.run.cache_dir, f'{spec.replace(":", "_")}.npz')
    if paths.as_path(path).exists():
      pca = features_lib.read_cache(path, pca_lib.load_pca)
      if pca is not None:
        return pca
    s = self.splits[train_split]
    if s.in_memory:
      pca = pca_lib.fit_pca(s.features, t.k)
    else:
      # One power iteration: at conv4_3 size each pass over the store takes minutes.
      pca = pca_lib.fit_pca(
          s.store, t.k, rows=s.rows, method='randomized', n_iter=1, memory_budget=self.budget
      )
    paths.as_path(path).parent.mkdir(parents=True, exist_ok=True)
    pca_lib.save_pca(pca, path)
    return pca

  def fit_transform(self, spec: str, train_split: str, clip_percentile: float) -> Deployed:
    """The deployed transform of `spec`: its PCA, then the clip at `clip_percentile` of the
    owner's transformed training features' norms (0: no clip)."""
    pca = self.fit_pca(spec, train_split)
    if not clip_percentile:
      return Deployed(spec, pca, None)
    s = self.splits[train_split]
    if s.in_memory:
      z = np.asarray(s.features if pca is None else pca.apply(s.features), np.float32)
      norms = np.linalg.norm(z.reshape(len(z), -1), axis=1)
    elif pca is None:
      norms = self.store_norms(s)
    else:
      z = pca_lib.project(pca, s.store, s.rows, memory_budget=self.budget)
      norms = np.linalg.norm(z, axis=1)
    return Deployed(spec, pca, dp.clip_from_norms(norms, clip_percentile))

  def store_norms(self, split: Split) -> np.ndarray:
    batch = split.store.rows_within(max(self.budget, 1 << 20) // 2)
    norms = np.zeros(split.rows.size, np.float64)
    for pos, x in split.store.batches(split.rows, batch):
      norms[pos] = np.linalg.norm(x.astype(np.float32), axis=1)
    return norms

  def setting(self, transform: Deployed, variance: float, baseline: bool) -> Setting:
    if not variance:
      transform = dataclasses.replace(transform, clip=None)  # the clip only bounds the noise
    return Setting(transform.spec, float(variance), transform, baseline, self)


def _store_dir(run, splits, dtype) -> str:
  return os.path.join(run.cache_dir, f'store_{"+".join(splits)}_{dtype}')


def _extract_store(run, splits, *, batch_size: int, dtype: str) -> dict[str, Split]:
  """The splits' features written batch by batch into one store (only logits and labels held).

  A finished store from an earlier evaluation is reused; an unfinished one (no logits file: a
  killed evaluation) is written again.
  """
  directory = _store_dir(run, splits, dtype)
  logits_path = os.path.join(directory, 'logits.npz')
  loaded = {s: pipeline.load_split(run.builder, s) for s in splits}
  if not os.path.exists(logits_path):
    if os.path.exists(directory):
      shutil.rmtree(directory)
    arch = models.get_architecture(run.config.model.arch)
    shape = tuple(models.feature_shape(arch, run.config.model.cut))
    logits = {}
    with shards.ShardWriter(directory, shape, dtype=dtype) as writer:
      for i, s in enumerate(splits):
        chunks, offset = [], 0
        batches = features_lib.feature_batches(
            run.model, run.config, loaded[s], batch_size=batch_size
        )
        for f, l in batches:
          n = f.shape[0]
          writer.write(f, split=np.full(n, i), row=np.arange(offset, offset + n))
          chunks.append(l)
          offset += n
        logits[s] = np.concatenate(chunks)
    np.savez(logits_path + '.tmp.npz', **logits)
    os.replace(logits_path + '.tmp.npz', logits_path)
  store = shards.FeatureStore(directory)
  which = store.labels('split')
  out = {}
  with np.load(logits_path) as saved:
    for i, s in enumerate(splits):
      labels = {k: np.asarray(v) for k, v in loaded[s].labels.items()}
      rows = np.flatnonzero(which == i)
      out[s] = Split(s, labels, saved[s], store=store, rows=rows, store_splits=tuple(splits))
  return out


def check_streamable(run, eval_config, big) -> None:
  """One-line ConfigErrors for what a feature store cannot do, before any work."""
  if not paths.is_local(run.workdir):
    raise ConfigError(
        f'memory_budget_gb: feature stores are written to a local disk; workdir {run.workdir} '
        'is a URI'
    )
  dtype = eval_config.get('feature_store_dtype', 'float16')
  if dtype not in shards.DTYPES:
    raise ConfigError(f'feature_store_dtype={dtype!r}; valid: {", ".join(shards.DTYPES)}')


def extract(run, splits, eval_config) -> Features:
  """Every split's features, in memory or (over the budget) in a store; see the module docstring."""
  budget = budget_bytes(eval_config)
  big = oversized(run, splits, budget)
  if big:
    check_streamable(run, eval_config, big)
  dtype = eval_config.get('feature_store_dtype', 'float16')
  groups = [tuple(s for s in ATTACKER_SPLITS if s in splits)] + [
      (s,) for s in splits if s not in ATTACKER_SPLITS
  ]
  out = {}
  for group in groups:
    if any(s in big for s in group):
      out.update(_extract_store(run, list(group), batch_size=eval_config.batch_size, dtype=dtype))
    else:
      for s in group:
        d = features_lib.extract(run, s, batch_size=eval_config.batch_size)
        labels = {k: v for k, v in d.items() if k not in ('features', 'logits')}
        out[s] = Split(s, labels, d['logits'], features=d['features'])
  arch = models.get_architecture(run.config.model.arch)
  shape = tuple(models.feature_shape(arch, run.config.model.cut))
  return Features(run, out, int(eval_config.seed), budget, shape)
