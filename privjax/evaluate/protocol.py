"""The paper's privacy measurement of one run: `evaluate_run(workdir, eval_config) -> report dict`.

For every feature transform (none, PCA-k fitted on the model owner's training features and then
frozen) and every noise variance, it measures
  * utility: the trained cloud head's primary accuracy on the (inverse-)transformed test features,
    and a freshly trained linear probe's;
  * each attacker family's top-1/top-5 for each secret label, trained on attacker-train and tested
    on attacker-test features, and the strongest family;
  * rank privacy and log-rank privacy of the noisy attacker-test features;
and once per run: chance and raw-pixel reference attackers, a reference run's features, feature
norms and same/different-pair distances, and the reconstruction attack (PSNR/SSIM and a PNG grid).
Must not import privjax.train.loop: evaluation never updates the extractor.
"""

from __future__ import annotations

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from privjax import metrics, models
from privjax.attacks import reconstruction, registry
from privjax.data import pipeline
from privjax.evaluate import features as features_lib
from privjax.evaluate import memo
from privjax.evaluate.errors import EvalError
from privjax.privacy import transforms

ATTACKER_SPLITS = ('attacker_train', 'attacker_test')


def _log(msg, *args):
  logging.info(msg, *args)
  print(msg % args if args else msg, flush=True)


def check_request(run, eval_config) -> list[str]:
  """Validates labels, transforms and splits before any work; returns the secrets to attack."""
  for secret in eval_config.secrets:
    try:
      pipeline.label_num_classes(run.builder, secret)
    except pipeline.DataError as e:
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
  for family in eval_config.attackers:
    if family not in registry.ATTACKERS:
      raise EvalError(f'unknown attacker {family!r}; valid: {", ".join(registry.ATTACKERS)}')
  return list(eval_config.secrets)


def head_factory(run):
  """Fresh copies of the layers after the cut: the paper's transfer-learning attacker."""

  def factory(num_classes, rngs):
    return models.build_head(run.config.model.arch, run.config.model.cut, num_classes, rngs=rngs)

  return factory


def _fit_transform(spec: str, train_features, cache_path: str):
  t = transforms.parse_transform(spec)
  if t.kind == 'none':
    return None
  if os.path.exists(cache_path):
    return transforms.load_pca(cache_path)
  pca = transforms.fit_pca(train_features, t.k)
  os.makedirs(os.path.dirname(cache_path), exist_ok=True)
  transforms.save_pca(pca, cache_path)
  return pca


def _apply(pca, features):
  return np.asarray(features if pca is None else pca.apply(features), np.float32)


def _noisy(key, z, variance):
  return np.asarray(transforms.add_gaussian_noise(key, jnp.asarray(z), variance), np.float32)


def _head_accuracy(run, pca, z, labels, batch_size=512) -> float:
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
  for family in families:
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


def evaluate_run(
    workdir: str, eval_config, *, step: int | None = None, data_dir: str | None = None
) -> dict:
  run = features_lib.load_run(workdir, step, data_dir=data_dir)
  secrets = check_request(run, eval_config)
  out_dir = os.path.join(workdir, 'eval', eval_config.name)
  cfg = run.config
  primary = cfg.dataset.primary
  overrides = eval_config.attacker_overrides.to_dict()
  factory = head_factory(run)
  t_start = time.perf_counter()

  _log('[%s] extracting features at step %d', workdir, run.step)
  data = {
      s: features_lib.extract(run, s, batch_size=eval_config.batch_size)
      for s in (cfg.dataset.train_split, cfg.dataset.test_split) + ATTACKER_SPLITS
  }
  train, test = data[cfg.dataset.train_split], data[cfg.dataset.test_split]
  atk_train, atk_test = data['attacker_train'], data['attacker_test']

  report = {
      'workdir': os.path.abspath(workdir),
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
      'num_examples': {k: int(len(v['features'])) for k, v in data.items()},
      'feature_shape': list(train['features'].shape[1:]),
      'primary_accuracy_full_model': metrics.topk_accuracy(test['logits'], test[primary]),
      'feature_stats': feature_statistics(test['features'], test[primary]),
      'sweep': [],
  }
  # The untransformed, noiseless setting (else the first): where a secret equal to the primary
  # label is attacked when eval_config.primary_secret_sweep is off (the probe covers the rest).
  settings = [(t, v) for t in eval_config.transforms for v in eval_config.noise_variances]
  baseline_setting = ('none', 0.0) if ('none', 0.0) in settings else settings[0]
  key = jax.random.key(eval_config.seed)
  for spec in eval_config.transforms:
    pca = _fit_transform(
        spec, train['features'], os.path.join(run.cache_dir, f'{spec.replace(":", "_")}.npz')
    )
    z = {name: _apply(pca, d['features']) for name, d in data.items()}
    for variance in eval_config.noise_variances:
      _log('[%s] transform %s, noise variance %g', workdir, spec, variance)
      key, *keys = jax.random.split(key, 1 + len(z))
      noisy = {name: _noisy(k, z[name], variance) for k, name in zip(keys, z)}
      entry = {
          'transform': spec,
          'noise_variance': float(variance),
          'uploaded_dims': int(np.prod(noisy[cfg.dataset.test_split].shape[1:])),
          'primary_head_accuracy': _head_accuracy(
              run, pca, noisy[cfg.dataset.test_split], test[primary]
          ),
      }
      if eval_config.probe:
        probe = attack_secret(
            ['linear'],
            noisy[cfg.dataset.train_split],
            noisy[cfg.dataset.test_split],
            train[primary],
            test[primary],
            seed=eval_config.seed,
            factory=None,
            overrides=overrides,
            use_memo=eval_config.attack_memo,
        )
        entry['primary_probe'] = probe['families']['linear']
      # The transfer attacker re-trains the layers after the cut, so it sees cut-shaped input.
      transfer_in = {
          name: noisy[name] if pca is None else np.asarray(pca.inverse(noisy[name]), np.float32)
          for name in noisy
      }
      baseline = (spec, variance) == baseline_setting
      entry['attacks'] = {
          secret: attack_secret(
              eval_config.attackers,
              noisy['attacker_train'],
              noisy['attacker_test'],
              atk_train[secret],
              atk_test[secret],
              seed=eval_config.seed,
              factory=factory,
              overrides=overrides,
              transfer_inputs=(transfer_in['attacker_train'], transfer_in['attacker_test']),
              head=f'{cfg.model.arch}:{cfg.model.cut}',
              use_memo=eval_config.attack_memo,
          )
          for secret in secrets
          if secret != primary or baseline or eval_config.primary_secret_sweep
      }
      if eval_config.rank_privacy:
        entry['rank_privacy'] = metrics.rank_privacy(z['attacker_test'], noisy['attacker_test'])
      report['sweep'].append(entry)

  if eval_config.pixel_reference:
    report['pixel_reference'] = pixel_reference(run, eval_config, secrets, overrides)
  if eval_config.reference_run:
    report['reference_run'] = reference_run_attacks(eval_config, secrets, overrides, data_dir)
  if eval_config.reconstruction.enabled:
    report['reconstruction'] = reconstruction_attack(
        run, eval_config, atk_train['features'], atk_test['features'], out_dir
    )
  report['seconds'] = time.perf_counter() - t_start
  report['versions'] = package_versions()
  return report


def pixel_reference(run, eval_config, secrets, overrides) -> dict:
  """Attackers on raw pixels: what the cloud could learn if the device sent the image itself."""
  images = {s: features_lib.split_images(run.builder, run.config, s) for s in ATTACKER_SPLITS}
  labels = {s: pipeline.load_split(run.builder, s).labels for s in ATTACKER_SPLITS}
  x = {s: images[s].reshape(len(images[s]), -1).astype(np.float32) / 255.0 for s in images}
  # The transfer attacker needs cut-shaped input; on pixels it would be a whole new network.
  families = [f for f in eval_config.attackers if f != 'transfer']
  return {
      secret: attack_secret(
          families,
          x['attacker_train'],
          x['attacker_test'],
          labels['attacker_train'][secret],
          labels['attacker_test'][secret],
          seed=eval_config.seed,
          factory=None,
          overrides=overrides,
          use_memo=eval_config.attack_memo,
      )
      for secret in secrets
  }


def reference_run_attacks(eval_config, secrets, overrides, data_dir) -> dict:
  """The same attackers on another run's untransformed, noiseless cut features."""
  ref = features_lib.load_run(eval_config.reference_run, data_dir=data_dir)
  d = {s: features_lib.extract(ref, s, batch_size=eval_config.batch_size) for s in ATTACKER_SPLITS}
  out = {
      'workdir': os.path.abspath(eval_config.reference_run),
      'step': ref.step,
      'mode': ref.defence['name'],
  }
  for secret in secrets:
    out[secret] = attack_secret(
        eval_config.attackers,
        d['attacker_train']['features'],
        d['attacker_test']['features'],
        d['attacker_train'][secret],
        d['attacker_test'][secret],
        seed=eval_config.seed,
        factory=head_factory(ref),
        overrides=overrides,
        head=f'{ref.config.model.arch}:{ref.config.model.cut}',
        use_memo=eval_config.attack_memo,
    )
  return out


def reconstruction_attack(run, eval_config, train_features, test_features, out_dir) -> dict:
  """Decoder from noiseless cut features to images, trained on attacker-train images."""
  images = {
      s: features_lib.split_images(run.builder, run.config, s).astype(np.float32) / 255.0
      for s in ATTACKER_SPLITS
  }
  rc = eval_config.reconstruction
  t0 = time.perf_counter()
  decoder = reconstruction.fit_decoder(
      train_features,
      images['attacker_train'],
      steps=rc.steps,
      batch_size=rc.batch_size,
      seed=eval_config.seed,
  )
  recon = np.asarray(decoder.reconstruct(test_features))
  os.makedirs(out_dir, exist_ok=True)
  grid = reconstruction.save_image_grid(
      images['attacker_test'], recon, os.path.join(out_dir, 'reconstruction.png')
  )
  return {
      'psnr': float(np.mean(metrics.psnr(images['attacker_test'], recon))),
      'ssim': float(np.mean(metrics.ssim(images['attacker_test'], recon))),
      'grid': os.path.relpath(grid, out_dir),
      'train_seconds': time.perf_counter() - t0,
  }


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
