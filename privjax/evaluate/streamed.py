"""Evaluation of splits whose features do not fit a memory budget: shards on disk, streaming attackers.

`eval_config.memory_budget_gb` (0 or None, the default: every split in memory, as before). When
set, every split whose float32 cut features would exceed it is extracted batch by batch straight
into a feature store (privjax.attacks.shards) under the run's feature cache
(`RUN/eval/cache/step_<S>/store_<splits>_<dtype>/`, `eval_config.feature_store_dtype`, reused by a
later evaluation); the attacker splits share one store (attacker-train rows, then attacker-test),
since a streaming attacker reads the rows it trains on and the rows it scores from one store. The
report has the protocol's structure (`protocol.evaluate_run` hands over to `evaluate_run` here
after it has checked the request).

Per setting:
* `none`: the uploaded features stay on disk; the noise is added per batch as rows are read
  (`NoisyStore`: the same noise for a row on every read, from the eval seed, the split and the
  row), and the attackers evaluator runs the streaming families (`linear` -> `streaming_linear`,
  `pca_linear` -> `streaming_pca_linear`); families without a streaming version are skipped,
  logged, and listed under `skipped` in the secret's record.
* `pca:k`: the PCA is fitted on the owner's training features by `streaming.fit_randomized_pca`
  when they are on disk (`transforms.fit_pca` when they fit), every split is projected a batch at a
  time, and the k-dimensional codes, which fit, get their noise and the in-memory attackers, as
  the protocol does; `transfer` is skipped (it needs the features mapped back to the cut's shape,
  which is what does not fit).

Not supported (a one-line ConfigError names them): evaluators other than `attackers` (they read
whole feature arrays), a workdir that is a URI (stores are written to a local disk), a budget
below one row of features. The attack memo is not used for streamed settings.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import zlib

import numpy as np

from privjax import metrics, paths
from privjax.attacks import shards, streaming
from privjax.data import pipeline
from privjax.errors import ConfigError
from privjax.evaluate import features as features_lib
from privjax.evaluate.evaluators import common
from privjax.privacy import transforms

SUPPORTED_EVALUATORS = ('attackers',)
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


def check(run, eval_config, evaluator_names, big) -> None:
  """One-line ConfigErrors for what streaming evaluation does not support, before any work."""
  other = [n for n in evaluator_names if n not in SUPPORTED_EVALUATORS]
  if other:
    raise ConfigError(
        f'memory_budget_gb: splits {", ".join(big)} do not fit it, and evaluators '
        f'{", ".join(other)} need whole feature arrays; with a memory budget, evaluators must be '
        f'among: {", ".join(SUPPORTED_EVALUATORS)}'
    )
  from privjax.evaluate.evaluators import attackers

  if 'attackers' in evaluator_names and not set(eval_config.attackers) & set(attackers.STREAMING):
    raise ConfigError(
        f'memory_budget_gb: none of the attackers {", ".join(eval_config.attackers)} has a '
        f'streaming version; use one of: {", ".join(attackers.STREAMING)}'
    )
  if not paths.is_local(run.workdir):
    raise ConfigError(
        f'memory_budget_gb: feature stores are written to a local disk; workdir {run.workdir} '
        'is a URI'
    )
  dtype = eval_config.get('feature_store_dtype', 'float16')
  if dtype not in shards.DTYPES:
    raise ConfigError(f'feature_store_dtype={dtype!r}; valid: {", ".join(shards.DTYPES)}')


@dataclasses.dataclass(frozen=True)
class NoisyStore(shards.FeatureStore):
  """A store read with Gaussian noise of `variance` added to every row (float32 on read).

  Row r's noise is drawn from (`seed`, r) whatever the read, so every pass over the store (each
  epoch, each column block) sees the same uploaded features.
  """

  variance: float = 0.0
  seed: int = 0

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(np.float32) if self.variance else super().dtype

  def _noise(self, row: int) -> np.ndarray:
    rng = np.random.default_rng((self.seed, int(row)))
    return rng.standard_normal(self.dim, dtype=np.float32) * np.float32(np.sqrt(self.variance))

  def rows(self, rows) -> np.ndarray:
    out = super().rows(rows)
    if self.variance:
      for i, r in enumerate(self._check(rows)):
        out[i] += self._noise(r)
    return out

  def columns(self, rows, start: int, stop: int, out=None) -> np.ndarray:
    out = super().columns(rows, start, stop, out)
    if self.variance:
      for i, r in enumerate(self._check(rows)):
        out[i] += self._noise(r)[start:stop]
    return out


def _store_dir(run, splits, dtype) -> str:
  return os.path.join(run.cache_dir, f'store_{"+".join(splits)}_{dtype}')


def extract_store(run, splits, *, batch_size: int, dtype: str) -> dict:
  """{split: {'store', 'rows', 'logits', <label>...}} for `splits`, written into one store.

  Features go batch by batch from the extractor into the shards; only the logits and labels are
  held. A finished store from an earlier evaluation is reused; an unfinished one (no manifest,
  a killed evaluation) is written again.
  """
  directory = _store_dir(run, splits, dtype)
  logits_path = os.path.join(directory, 'logits.npz')
  loaded = {s: pipeline.load_split(run.builder, s) for s in splits}
  if not os.path.exists(logits_path):
    if os.path.exists(directory):
      shutil.rmtree(directory)
    arch = models_feature_shape(run)
    logits = {}
    with shards.ShardWriter(directory, arch, dtype=dtype) as writer:
      for s in splits:
        chunks, offset = [], 0
        batches = features_lib.feature_batches(
            run.model, run.config, loaded[s], batch_size=batch_size
        )
        for f, l in batches:
          n = f.shape[0]
          writer.write(f, split=np.full(n, splits.index(s)), row=np.arange(offset, offset + n))
          chunks.append(l)
          offset += n
        logits[s] = np.concatenate(chunks)
    np.savez(logits_path + '.tmp.npz', **logits)
    os.replace(logits_path + '.tmp.npz', logits_path)
  store = shards.FeatureStore(directory)
  which = store.labels('split')
  with np.load(logits_path) as saved:
    out = {}
    for i, s in enumerate(splits):
      rows = np.flatnonzero(which == i)
      out[s] = {'store': store, 'rows': rows, 'logits': saved[s]}
      out[s].update({k: np.asarray(v) for k, v in loaded[s].labels.items()})
  return out


def models_feature_shape(run) -> tuple[int, ...]:
  from privjax import models

  arch = models.get_architecture(run.config.model.arch)
  return tuple(models.feature_shape(arch, run.config.model.cut))


def _num(record) -> int:
  return int(record['rows'].size) if 'store' in record else int(len(record['features']))


def evaluate_run(run, eval_config, *, evaluators, secrets, splits, big, t_start) -> dict:
  """The protocol's report for a run whose splits `big` are streamed (see the module docstring)."""
  from privjax.evaluate import protocol
  from privjax.evaluate.evaluators import attackers

  check(run, eval_config, [name for name, _, _ in evaluators], big)
  budget = budget_bytes(eval_config)
  dtype = eval_config.get('feature_store_dtype', 'float16')
  cfg = run.config
  primary = cfg.dataset.primary
  groups = [tuple(s for s in ATTACKER_SPLITS if s in splits)] + [
      (s,) for s in splits if s not in ATTACKER_SPLITS
  ]
  data = {}
  for group in groups:
    if any(s in big for s in group):
      common.log('[%s] extracting %s into a feature store (%s)', run.workdir, group, dtype)
      data.update(extract_store(run, list(group), batch_size=eval_config.batch_size, dtype=dtype))
    else:
      for s in group:
        data[s] = features_lib.extract(run, s, batch_size=eval_config.batch_size)
  train, test = data[cfg.dataset.train_split], data[cfg.dataset.test_split]
  if 'store' in test:
    # The protocol's statistics look at 4,000 random pairs; their norms here at 4,000 rows.
    pos = np.sort(np.random.default_rng(0).permutation(test['rows'].size)[:4000])
    stats = protocol.feature_statistics(test['store'].rows(test['rows'][pos]), test[primary][pos])
    feature_shape = list(test['store'].feature_shape)
  else:
    stats = protocol.feature_statistics(test['features'], test[primary])
    feature_shape = list(test['features'].shape[1:])
  overrides = eval_config.attacker_overrides.to_dict()
  ctx = common.Context(
      run=run,
      config=eval_config,
      secrets=secrets,
      data=data,
      out_dir=os.path.join(run.workdir, 'eval', eval_config.name),
      attack=lambda families, *a, **kw: protocol.attack_secret(
          families,
          *a,
          **{'seed': eval_config.seed, 'overrides': overrides, 'use_memo': False, **kw},
      ),
  )
  report = {
      **protocol.report_header(run.workdir, run, cfg, eval_config, primary, secrets),
      'num_examples': {k: _num(v) for k, v in data.items()},
      'feature_shape': feature_shape,
      'primary_accuracy_full_model': metrics.topk_accuracy(test['logits'], test[primary]),
      'feature_stats': stats,
      'sweep': [],
      'streamed_splits': list(big),
  }
  produced = protocol.evaluator_records(evaluators)
  for spec in eval_config.transforms:
    pca = _fit_transform(run, spec, train, budget)
    clean = {s: _project(pca, d, budget) for s, d in data.items()}
    for vi, variance in enumerate(eval_config.noise_variances):
      common.log('[%s] transform %s, noise variance %g (streamed)', run.workdir, spec, variance)
      noisy = {}
      for s, z in clean.items():
        # A store's rows get their noise by row: the splits that share it share its seed.
        where = z.directory if isinstance(z, shards.FeatureStore) else s
        seed = zlib.crc32(f'{eval_config.seed}/{spec}/{vi}/{where}'.encode())
        if isinstance(z, shards.FeatureStore):
          noisy[s] = NoisyStore(z.directory, variance=float(variance), seed=seed)
        else:
          rng = np.random.default_rng(seed)
          noisy[s] = z + rng.standard_normal(z.shape, dtype=np.float32) * np.float32(
              np.sqrt(variance)
          )
      setting = common.Setting(
          transform=spec,
          noise_variance=float(variance),
          pca=pca,
          clean=clean,
          noisy=noisy,
          baseline=(spec, variance) == ('none', 0.0),
      )
      d_up = pca.k if pca is not None else int(np.prod(feature_shape))
      entry = {'transform': spec, 'noise_variance': float(variance), 'uploaded_dims': d_up}
      for name, _, where in evaluators:
        if where == 'each' or setting.baseline:
          t0, cpu0 = time.perf_counter(), time.process_time()
          results = attackers.run_streamed(ctx, setting, budget)
          produced[name]['seconds'] += time.perf_counter() - t0
          produced[name]['cpu_seconds'] += time.process_time() - cpu0
          entry.update(results)
          produced[name]['keys'] = list(dict.fromkeys(produced[name]['keys'] + list(results)))
      report['sweep'].append(entry)
  report['evaluators'] = produced
  report['seconds'] = time.perf_counter() - t_start
  report['versions'] = protocol.package_versions()
  return report


def _fit_transform(run, spec, train, budget):
  t = transforms.parse_transform(spec)
  if t.kind == 'none':
    return None
  path = os.path.join(run.cache_dir, f'{spec.replace(":", "_")}.npz')
  if os.path.exists(path):
    return transforms.load_pca(path)
  if 'store' in train:
    pca = streaming.fit_randomized_pca(train['store'], train['rows'], t.k, memory_budget=budget)
  else:
    pca = transforms.fit_pca(train['features'], t.k)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  transforms.save_pca(pca, path)
  return pca


def _project(pca, record, budget):
  """A split's transformed, noiseless features: its store (no transform) or codes in memory."""
  if 'store' not in record:
    return np.asarray(
        record['features'] if pca is None else pca.apply(record['features']), np.float32
    )
  if pca is None:
    return record['store']
  return streaming.project_store(pca, record['store'], record['rows'], memory_budget=budget)
