"""The paper's privacy measurement of one run: `evaluate_run(workdir, eval_config) -> report dict`.

It restores the run, extracts the frozen cut features of every split, and runs the evaluators named
in `eval_config.evaluators` (privjax/evaluate/evaluators/, one module each): for every feature
transform (none, PCA-k fitted on the model owner's training features and then frozen) and every
noise variance, the evaluators that run per setting (the cloud head's utility, a fresh primary
probe, each attacker family on each secret, rank privacy, open-set identity...), then those that run
once (the raw-pixel and reference-run attackers, the reconstruction decoder, white-box inversion,
re-identification of the reconstructions). The report also holds the run's description, feature
norms and same/different-pair distances, which evaluator produced which keys, and timings.

Progress goes to the terminal (`tqdm.auto`: over the settings, the evaluators run once, and the
attacker fits of each secret) and every setting's results, as scalars, and the reconstruction grid,
as an image, to TensorBoard under `RUN/eval/<name>/tensorboard` (privjax.evaluate.tensorboard).

Must not import privjax.train.loop: evaluation never updates the extractor.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import auto as tqdm

from privjax import metrics, models, paths
from privjax.attacks import registry
from privjax.data import pipeline
from privjax.errors import DataError, EvalError
from privjax.evaluate import features as features_lib
from privjax.evaluate import memo, streamed, tensorboard
from privjax.evaluate.evaluators import common
from privjax.privacy import transforms

ATTACKER_SPLITS = ('attacker_train', 'attacker_test')

_log = common.log


def check_request(run, eval_config) -> list[str]:
  """Validates labels, transforms and splits before any work; returns the secrets to attack."""
  for secret in eval_config.secrets:
    try:
      pipeline.label_num_classes(run.builder, secret)
    except DataError as e:
      raise EvalError(str(e)) from None
  splits = run.builder.info.splits
  for split in ATTACKER_SPLITS + (run.config.dataset.train_split, run.config.dataset.test_split):
    if split not in splits:
      raise EvalError(
          f'data set {run.builder.name} has no split {split!r}; it has: '
          f'{", ".join(sorted(splits.keys()))}'
      )
  dim = int(
      np.prod(
          models.feature_shape(models.get_architecture(run.config.model.arch), run.config.model.cut)
      )
  )
  for spec in eval_config.transforms:
    try:
      t = transforms.parse_transform(spec)
    except ValueError as e:
      raise EvalError(str(e)) from None
    if t.kind == 'pca' and t.k > dim:
      raise EvalError(
          f'transform {spec}: PCA size {t.k} is larger than the feature dimension '
          f'{dim} of cut {run.config.model.cut}'
      )
  for v in eval_config.noise_variances:
    if v < 0:
      raise EvalError(f'noise variance {v} is negative')
  return list(eval_config.secrets)


def report_header(workdir, run, cfg, eval_config, primary: str, secrets) -> dict:
  """The report's first keys: which run, checkpoint, cut and configs it evaluates."""
  return {
      # A local run as an absolute path (as before); a URI unchanged.
      'workdir': os.fspath(paths.absolute(workdir)),
      'step': run.step,
      'mode': run.defence['name'],  # the defence (named `mode` in reports made before defences)
      'defence': run.defence,
      'cut': cfg.model.cut,
      'arch': cfg.model.arch,
      'primary': primary,
      'secrets': secrets,
      'train_config': cfg.to_dict(),
      'eval_config': eval_config.to_dict(),
      'margin': run.defence.get('margin'),
      'seeds': {'train': cfg.seed, 'eval': eval_config.seed},
  }


def evaluator_records(evaluators) -> dict:
  """report['evaluators'] before any has run: where each runs, its keys and its time so far."""
  return {
      name: {'settings': where, 'keys': [], 'seconds': 0.0, 'cpu_seconds': 0.0}
      for name, _, where in evaluators
  }


def load_evaluators(eval_config) -> list[tuple[str, object, str]]:
  """(name, module, where it runs) of every enabled evaluator, in the config's order."""
  names = list(eval_config.evaluators)
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise EvalError(f'evaluators named twice: {", ".join(dupes)}')
  out = []
  for name in names:
    module = common.load(name)
    if common.is_enabled(module, eval_config, name):
      out.append((name, module, common.settings_of(module, eval_config, name)))
  return out


def head_factory(run):
  """Fresh copies of the layers after the cut: the paper's transfer-learning attacker."""

  def factory(num_classes, rngs):
    return models.build_head(run.config.model.arch, run.config.model.cut, num_classes, rngs=rngs)

  return factory


def _fit_transform(spec: str, train_features, cache_path: str):
  t = transforms.parse_transform(spec)
  if t.kind == 'none':
    return None
  cache = paths.as_path(cache_path)
  if cache.exists():
    return transforms.load_pca(cache_path)
  pca = transforms.fit_pca(train_features, t.k)
  cache.parent.mkdir(parents=True, exist_ok=True)
  transforms.save_pca(pca, cache_path)
  return pca


def fit_transform(run, spec: str, train_features):
  """The transform `spec` fitted on the owner's training features (cached with the run's features)."""
  return _fit_transform(
      spec, train_features, paths.join(run.cache_dir, f'{spec.replace(":", "_")}.npz')
  )


def _apply(pca, features):
  return np.asarray(features if pca is None else pca.apply(features), np.float32)


def _noisy(key, z, variance):
  return np.asarray(transforms.add_gaussian_noise(key, jnp.asarray(z), variance), np.float32)


def head_accuracy(run, pca, z, labels, batch_size=512) -> float:
  """The trained cloud head on uploaded features (mapped back through PCA, as the paper does)."""
  graphdef, params = nnx.split(run.model.head)

  @jax.jit
  def logits_fn(params, z):
    f = z if pca is None else pca.inverse(z)
    return nnx.merge(graphdef, params)(f)

  logits = np.concatenate(
      [np.asarray(logits_fn(params, z[i : i + batch_size])) for i in range(0, len(z), batch_size)]
  )
  return metrics.topk_accuracy(logits, labels, 1)


def attack_secret(
    families,
    train,
    test,
    y_train,
    y_test,
    *,
    seed,
    factory,
    overrides,
    transfer_inputs=None,
    head: str | None = None,
    use_memo: bool = True,
    desc: str = 'attackers',
) -> dict:
  """Every family on one secret label, the strongest (by top-1, then top-5) and the baselines.

  The record is `registry.summarize`'s: each family's accuracies with standard errors, and the
  chance and majority-class rates.

  `transfer_inputs` = (train, test) in the cut's shape, for the attacker that re-trains the head;
  `head` names that head's architecture (for example 'vgg_mini:conv4_2'), part of the memo key.
  With `use_memo`, a result already computed for the same inputs and settings is read back from
  `privjax.evaluate.memo` (and marked `memo: true`) instead of training the attackers again.
  """
  if transfer_inputs is None:
    transfer_inputs = (train, test)
  digest = None
  if use_memo and memo.cache_root() is not None:
    arrays = {'train': train, 'test': test, 'y_train': y_train, 'y_test': y_test}
    if 'transfer' in families:
      arrays.update(transfer_train=transfer_inputs[0], transfer_test=transfer_inputs[1])
    digest = memo.key(
        arrays,
        {
            'families': list(families),
            'seed': seed,
            'overrides': overrides,
            'head': head if 'transfer' in families else None,
        },
    )
    hit = memo.load(digest)
    if hit is not None:
      return dict(hit, memo=True)
  results = {}
  bar = tqdm.tqdm(families, desc=desc, unit='fit', leave=False)
  for family in bar:
    bar.set_postfix_str(family)
    x_train, x_test = transfer_inputs if family == 'transfer' else (train, test)
    results[family] = registry.run_attack(
        family,
        x_train,
        y_train,
        x_test,
        y_test,
        seed=seed,
        module_factory=factory,
        **overrides.get(family, {}),
    )
  out = registry.summarize(results, y_train, y_test)
  if digest is not None:
    memo.save(digest, out)
  return out


def feature_statistics(features, labels) -> dict:
  """Feature norms and distances of same/different-label pairs (the margin's units)."""
  f = features.reshape(len(features), -1).astype(np.float64)
  norms = np.linalg.norm(f, axis=1)
  rng = np.random.default_rng(0)
  n = min(len(f), 4000)
  i, j = rng.integers(len(f), size=n), rng.integers(len(f), size=n)
  keep = i != j
  i, j = i[keep], j[keep]
  d = np.linalg.norm(f[i] - f[j], axis=1)
  same = labels[i] == labels[j]

  def describe(x):
    if len(x) == 0:
      return {}
    q = np.percentile(x, [5, 25, 50, 75, 95])
    return {
        'mean': float(x.mean()),
        'p5': q[0],
        'p25': q[1],
        'median': q[2],
        'p75': q[3],
        'p95': q[4],
    }

  return {
      'norm': describe(norms),
      'dist_same': describe(d[same]),
      'dist_diff': describe(d[~same]),
      'dims': int(f.shape[1]),
      '_hist': {'same': d[same].tolist(), 'diff': d[~same].tolist()},
  }


def _merge(target: dict, results: dict, name: str, owners: dict) -> None:
  if not isinstance(results, dict):
    raise EvalError(f'evaluator {name!r} returned {type(results).__name__}, not a dict of results')
  for k, v in results.items():
    if k in target or k in owners:
      raise EvalError(f'evaluator {name!r} returns {k!r}, which {owners.get(k, "the report")} has')
    target[k] = v
    owners[k] = name


def evaluate_run(
    workdir: str, eval_config, *, step: int | None = None, data_dir: str | None = None
) -> dict:
  run = features_lib.load_run(workdir, step, data_dir=data_dir)
  secrets = check_request(run, eval_config)
  evaluators = load_evaluators(eval_config)
  for _, module, _ in evaluators:
    if hasattr(module, 'check'):
      module.check(run, eval_config)
  out_dir = report_dir(workdir, eval_config)
  cfg = run.config
  primary = cfg.dataset.primary
  overrides = eval_config.attacker_overrides.to_dict()
  t_start = time.perf_counter()

  splits = (cfg.dataset.train_split, cfg.dataset.test_split) + ATTACKER_SPLITS
  big = streamed.oversized(run, splits, streamed.budget_bytes(eval_config))
  if big:  # features larger than eval_config.memory_budget_gb: shards, streaming attackers
    return streamed.evaluate_run(
        run,
        eval_config,
        evaluators=evaluators,
        secrets=secrets,
        splits=splits,
        big=big,
        t_start=t_start,
    )
  _log('[%s] extracting features at step %d', workdir, run.step)
  data = {
      s: features_lib.extract(run, s, batch_size=eval_config.batch_size)
      for s in (cfg.dataset.train_split, cfg.dataset.test_split) + ATTACKER_SPLITS
  }
  train, test = data[cfg.dataset.train_split], data[cfg.dataset.test_split]

  def attack(families, *args, **kw):
    kw.setdefault('seed', eval_config.seed)
    kw.setdefault('overrides', overrides)
    kw.setdefault('use_memo', eval_config.attack_memo)
    return attack_secret(families, *args, **kw)

  ctx = common.Context(
      run=run,
      config=eval_config,
      secrets=secrets,
      data=data,
      out_dir=out_dir,
      attack=attack,
      data_dir=data_dir,
  )
  report = {
      **report_header(workdir, run, cfg, eval_config, primary, secrets),
      'num_examples': {k: int(len(v['features'])) for k, v in data.items()},
      'feature_shape': list(train['features'].shape[1:]),
      'primary_accuracy_full_model': metrics.topk_accuracy(test['logits'], test[primary]),
      'feature_stats': feature_statistics(test['features'], test[primary]),
      'sweep': [],
  }
  produced = evaluator_records(evaluators)
  # Keys the protocol writes after the evaluators have run are taken too.
  owners = {k: 'the report' for k in (*report, 'evaluators', 'seconds', 'versions')}

  def run_one(name, module, setting, target, target_owners):
    t0, cpu0 = time.perf_counter(), time.process_time()
    results = module.run(ctx, setting)
    produced[name]['seconds'] += time.perf_counter() - t0
    # CPU time of every thread: what the work costs, whatever else shares the machine.
    produced[name]['cpu_seconds'] += time.process_time() - cpu0
    _merge(target, results, name, target_owners)
    produced[name]['keys'] = list(dict.fromkeys(produced[name]['keys'] + list(results)))

  writer = tensorboard.EvalWriter(out_dir)
  # The untransformed, noiseless setting (else the first): where the 'baseline' evaluators run and
  # where a secret equal to the primary label is attacked when eval_config.primary_secret_sweep is
  # off (the probe covers the rest).
  settings = [(t, v) for t in eval_config.transforms for v in eval_config.noise_variances]
  baseline_setting = ('none', 0.0) if ('none', 0.0) in settings else settings[0]
  per_setting = [e for e in evaluators if e[2] != 'once']
  key = jax.random.key(eval_config.seed)
  bar = tqdm.tqdm(total=len(settings), desc='evaluation settings', unit='setting')
  for spec in eval_config.transforms:
    pca = fit_transform(run, spec, train['features'])
    z = {name: _apply(pca, d['features']) for name, d in data.items()}
    for variance in eval_config.noise_variances:
      _log('[%s] transform %s, noise variance %g', workdir, spec, variance)
      bar.set_postfix_str(f'{spec}, noise {variance:g}')
      key, *keys = jax.random.split(key, 1 + len(z))
      noisy = {name: _noisy(k, z[name], variance) for k, name in zip(keys, z)}
      setting = common.Setting(
          transform=spec,
          noise_variance=float(variance),
          pca=pca,
          clean=z,
          noisy=noisy,
          baseline=(spec, variance) == baseline_setting,
      )
      entry = {
          'transform': spec,
          'noise_variance': float(variance),
          'uploaded_dims': int(np.prod(noisy[cfg.dataset.test_split].shape[1:])),
      }
      entry_owners = {k: 'the sweep entry' for k in entry}
      for name, module, where in per_setting:
        if where == 'each' or setting.baseline:
          run_one(name, module, setting, entry, entry_owners)
      report['sweep'].append(entry)
      writer.setting(entry, settings.index((spec, variance)))
      bar.update(1)
  bar.close()

  once = [e for e in evaluators if e[2] == 'once']
  for name, module, _ in tqdm.tqdm(once, desc='evaluators run once', unit='evaluator'):
    _log('[%s] evaluator %s', workdir, name)
    run_one(name, module, None, report, owners)
  report['evaluators'] = produced
  report['seconds'] = time.perf_counter() - t_start
  report['versions'] = package_versions()
  writer.once(report, produced, run.step)
  writer.close()
  return report


def report_dir(workdir: str, eval_config) -> str:
  """Where the evaluation `eval_config` of the run in `workdir` writes its report files."""
  return paths.join(workdir, 'eval', eval_config.name)


def evaluate(
    workdir: str, eval_config, *, step: int | None = None, data_dir: str | None = None
) -> tuple[dict, str]:
  """Evaluates the run in `workdir` and writes its report files: (the report, their folder).

  The one evaluation path of every command (eval, reproduce, frontier, sweep) and of the notebook.
  """
  from privjax.report import plots, tables

  report = evaluate_run(workdir, eval_config, step=step, data_dir=data_dir)
  out_dir = report_dir(workdir, eval_config)
  tables.write_report(report, out_dir, plots.privacy_accuracy_plots)
  return report, out_dir


def package_versions() -> dict:
  import importlib.metadata as md

  out = {}
  for name in (
      'jax',
      'jaxlib',
      'flax',
      'optax',
      'orbax-checkpoint',
      'tensorflow-datasets',
      'grain',
      'numpy',
  ):
    try:
      out[name] = md.version(name)
    except md.PackageNotFoundError:
      pass
  return out
