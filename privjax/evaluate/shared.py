"""What several evaluators compute the same way: the cloud head on uploads, the attacker families on
one secret (with the attack memo), the distances between cut features, the image quality of
reconstructions, the device's function from images to uploads (what the white-box attacker owns) and
rows of images as one picture.

Below the orchestrator (privjax.evaluate.protocol), so evaluators import these and never the module
that runs them. Must not import privjax.evaluate.protocol, privjax.report or privjax.train.loop.
"""

from __future__ import annotations

import functools
import logging

import jax
import numpy as np
from flax import nnx
from tqdm import auto as tqdm

from privjax import models
from privjax.attacks import common, registry
from privjax.evaluate import memo
from privjax.metrics import classification, results
from privjax.metrics import image_quality as quality_lib
from privjax.privacy import dp, transforms


def head_factory(run):
  """Fresh copies of the layers after the cut: the paper's transfer-learning attacker."""

  def factory(num_classes, rngs):
    return models.build_head(run.config.model.arch, run.config.model.cut, num_classes, rngs=rngs)

  return factory


def head_logits(run, pca, z, batch_size: int = 512) -> np.ndarray:
  """The trained cloud head's logits on uploaded features (mapped back through PCA, as the paper
  does)."""
  graphdef, params = nnx.split(run.model.head)

  @jax.jit
  def logits_fn(params, z):
    f = z if pca is None else pca.inverse(z)
    return nnx.merge(graphdef, params)(f)

  return np.concatenate(
      [np.asarray(logits_fn(params, z[i : i + batch_size])) for i in range(0, len(z), batch_size)]
  )


def head_accuracy(run, pca, z, labels, batch_size: int = 512) -> float:
  return classification.topk_accuracy(head_logits(run, pca, z, batch_size), labels, 1)


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
    desc: str = 'attacker fits',
) -> dict:
  """Every family on one secret label, the strongest (by top-1, then top-5) and the baselines.

  The record is `registry.summarize`'s: each family's accuracies with standard errors, and the
  chance and majority-class rates. `transfer_inputs` = (train, test) in the cut's shape, for the
  attacker that re-trains the head; `head` names that head's architecture (for example
  'vgg_mini:conv4_2'), part of the memo key. With `use_memo`, a result already computed for the
  same inputs and settings is read back from `privjax.evaluate.memo` (and marked `memo: true`)
  instead of training the attackers again.
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
            'transfer_head': head if 'transfer' in families else None,
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


def pair_distances(features, labels, n: int = 4000, seed: int = 0):
  """(norms, distances, same label?) of `n` random pairs of rows: the margin's units."""
  f = np.asarray(features).reshape(len(features), -1).astype(np.float64)
  rng = np.random.default_rng(seed)
  n = min(len(f), n)
  i, j = rng.integers(len(f), size=n), rng.integers(len(f), size=n)
  keep = i != j
  i, j = i[keep], j[keep]
  return np.linalg.norm(f, axis=1), np.linalg.norm(f[i] - f[j], axis=1), labels[i] == labels[j]


def family_note(record: dict) -> str:
  """What a reader must know beside a family's top-1: its own PCA choice, a capped fit."""
  notes = []
  if 'pca_k' in record:
    notes.append(f'PCA-{record["pca_k"]}{", whitened" if record.get("whiten") else ""}')
  if record.get('converged') is False:
    notes.append(f'not converged: stopped at {record.get("iterations")} iterations')
  return '; '.join(notes)


def attack_metrics(secret: str, record: dict, *, role: str = 'leak', on: str = '') -> dict:
  """The metrics of `attack_secret`'s record on `secret`: each family's top-1 (of `role`) and
  top-5, and the chance and majority-class rates. `on` names what was attacked in the labels
  ('raw pixels'); nothing for the uploads."""
  where = f' on {on}' if on else ''
  leak = {'role': role, 'secret': secret} if role in ('leak', 'raw') else {}
  # Top-5 among five classes or fewer is 100% by construction: it says nothing.
  top5 = round(1 / record['chance_top1']) > 5
  out = {}
  for family, r in record['families'].items():
    out[f'{secret}/{family}'] = results.percent(
        r['top1'],
        r['top1_se'],
        label=f'{secret} top-1{where}, {family}',
        note=family_note(r),
        **leak,
    )
    if top5:
      out[f'{secret}/{family}/top5'] = results.percent(
          r['top5'], r['top5_se'], label=f'{secret} top-5{where}, {family}'
      )
  out[f'{secret}/chance'] = results.percent(record['chance_top1'], label=f'{secret} top-1, chance')
  out[f'{secret}/majority'] = results.percent(
      record['majority_top1'], label=f'{secret} top-1, majority class'
  )
  return out


def accuracy(correct: float, n: int, **kw) -> results.Metric:
  """An accuracy (fraction) over `n` test examples, in %, with its binomial standard error."""
  return results.percent(correct, classification.binomial_se(correct, n), **kw)


def pixels(ctx, split: str) -> np.ndarray:
  """The split's images flattened, float32 in [0, 1]: the input of attackers on raw pixels."""
  images = ctx.images(split)
  return images.reshape(len(images), -1)


# LPIPS runs VGG-16 on both images: on the first this many of a method's images (its standard error
# says how well they stand for the rest).
LPIPS_IMAGES = 256


@functools.cache
def _lpips():
  """(LPIPS parameters from the imagenet extra, jitted distance), loaded once; None without it."""
  from privjax.errors import PretrainedError
  from privjax.metrics import lpips
  from privjax.models import imagenet_weights

  try:
    params = imagenet_weights.lpips_params()
  except PretrainedError as e:
    logging.warning('reconstructions are judged without LPIPS: %s', e)
    print(f'warning: reconstructions are judged without LPIPS: {e}', flush=True)
    return None
  return params, jax.jit(lpips.distance)


# A baseline image's scores against the same originals are the same for every run of one data set
# (the attacker's mean image, which each evaluation of the main job's three runs reports): the
# newest few kept, by the arrays' content.
_BASELINES = common.Kept(4)


def image_quality(originals, images, what: str, role: str = 'fidelity') -> dict:
  """PSNR (dB), SSIM and LPIPS (where the imagenet extra is installed) of `images` against
  `originals`: means over the images with their standard errors; the SSIM has `role` ('fidelity'
  for a reconstruction, '' for a baseline). `images` may be one image [H, W, 3] (a baseline such
  as the mean image), compared with every original (its LPIPS features computed once per batch of
  originals; the scores kept for later calls with the same arrays)."""
  if images.ndim == 3:
    key = (what, role, memo.key({'originals': originals, 'image': images}, {}))
    scores = _BASELINES.get(key)
    if scores is None:
      scores = _image_quality(originals, images, what, role)
      _BASELINES.put(key, scores)
    return dict(scores)
  return _image_quality(originals, images, what, role)


def _image_quality(originals, images, what: str, role: str) -> dict:
  one = images.ndim == 3
  if one:
    images = images[None]
  full = np.broadcast_to(images, originals.shape) if one else images
  psnr = quality_lib.psnr(originals, full)
  ssim = quality_lib.ssim(originals, full)
  root_n = np.sqrt(len(originals))
  out = {
      'psnr': results.Metric(
          float(np.mean(psnr)), float(np.std(psnr) / root_n), 'dB', f'{what}: PSNR'
      ),
      'ssim': results.Metric(
          float(np.mean(ssim)), float(np.std(ssim) / root_n), label=f'{what}: SSIM', role=role
      ),
  }
  loaded = _lpips()
  if loaded is not None:
    params, distance = loaded
    n = min(len(originals), LPIPS_IMAGES)
    d = np.concatenate(
        [
            np.asarray(
                distance(params, originals[i : i + 64], images if one else images[i : i + 64])
            )
            for i in range(0, n, 64)
        ]
    )
    note = f'on {n} of {len(originals)} images' if n < len(originals) else ''
    out['lpips'] = results.Metric(
        float(np.mean(d)),
        float(np.std(d) / np.sqrt(n)),
        label=f'{what}: LPIPS (VGG, lower = closer)',
        note=note,
    )
  return out


def chosen_k(records: dict, min_people: int) -> int | None:
  """The largest group size k whose accounts cover at least `min_people` people (None if none)."""
  ok = [k for k, r in records.items() if r['top1'] is not None and r['num_people'] >= min_people]
  return max(ok) if ok else None


def pooled_metrics(records: dict, min_people: int, what: str, secret: str) -> dict:
  """A metric per k of privjax.attacks.accounts' records ({k: record}); the one at `chosen_k`
  (k > 1) is the leak seeing k uploads."""
  k_star = chosen_k(records, min_people)
  out = {}
  for k, r in records.items():
    if r['top1'] is None:
      continue
    note = f'{r["num_people"]} people, {r["num_groups"]} groups'
    leak = {'role': 'leak', 'secret': secret, 'uploads': int(k)} if k == k_star and k > 1 else {}
    out[f'k{k}'] = results.percent(
        r['top1'], r['top1_se'], label=f'{secret} top-1 {what}, {k} pooled', note=note, **leak
    )
  return out


def deployed_extractor(model, pca, variance: float, clip: float | None = None):
  """`f(x, key)`: images in [0, 1] -> uploads, as the device computes them (the extractor on
  0..255 pixels, its own random layers drawn from `key`, then PCA, the clip, then noise)."""
  graphdef, params = nnx.split(model.extractor)

  def extractor(x, key):
    k_device, k_noise = jax.random.split(key)
    f = nnx.merge(graphdef, params)(x * 255.0, rng=k_device)
    if pca is not None:
      f = pca.apply(f)
    if clip is not None:
      f = dp.clip_norm(f, clip)
    return transforms.add_gaussian_noise(k_noise, f, variance) if variance > 0 else f

  return extractor
