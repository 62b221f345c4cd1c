"""Re-identification of reconstructions: can the person be named from what an attacker redrew from
the uploads? Two identifiers, each applied to every reconstruction method's images of attacker-test
made before it at the same setting ('decoder', 'inversion') and to the original photos (the
ceiling):

* a classifier trained on the attacker's raw attacker-train images (privjax.attacks.reidentify;
  `family`, with the eval config's `attacker_overrides`);
* with `face`, dlib's pretrained face recogniser (privjax.attacks.face_recognition; the `face`
  extra): the nearest attacker-train original by descriptor names the person (gallery: the
  attacker's own photos, learned crop from them), with open-set verification of the
  reconstructions against that gallery (TAR at each FAR in `fars`) and accounts (the mean
  descriptor of k reconstructions of one person, top-1 per k in `ks`; privjax.attacks.accounts).

A reconstruction an identifier names is a leak of the uploads it came from ('leak' metrics; the
pooled one at the largest k with at least `min_people` people sees k uploads). The face
recogniser on the originals is what the cloud would learn from the photos themselves ('raw').

Settings: `where` (as the reconstruction methods'), `label` (the identity label), `family`, `face`,
`face_probes` and `face_gallery` (fewer images through the recogniser, for a fast evaluation: dlib
takes about 0.1 CPU-second a photo), `fars`, `ks`, `min_people`.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from privjax.attacks import accounts, face_recognition
from privjax.attacks.reidentify import ORIGINALS, fit_identity_classifier, reidentify
from privjax.data import pipeline
from privjax.errors import DataError, EvalError
from privjax.evaluate import memo, shared
from privjax.metrics import results

WHERE = 'baseline'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'baseline'
  label: str = 'identity'
  family: str = 'linear'  # any family but transfer
  face: bool = True
  face_probes: int = 0  # at most this many attacker-test rows (drawn with the seed); 0: all
  face_gallery: int = 0  # at most this many gallery photos per person; 0: all
  fars: tuple = (1e-2, 1e-3)
  ks: tuple = (1, 2, 4, 8)
  min_people: int = 30


def check(run, settings, eval_config) -> None:
  try:
    pipeline.label_num_classes(run.builder, settings.label)
  except DataError as e:
    raise EvalError(f'reidentify: {e}') from None
  if settings.family == 'transfer':
    raise EvalError('reidentify.family: the transfer attacker needs cut features, not pixels')
  if settings.face:
    face_recognition.check_installed()


# The face recogniser's crop and descriptors depend only on the attacker's photos, which every run of
# one data set shares: the runs a process evaluates in turn (the main job's three) compute them once.
# (The pixel classifier is kept by privjax.attacks.registry.fit the same way.)
# Evaluations running side by side in threads (privjax.experiments.runner) wait for one another's
# descriptors rather than computing them twice.
_FITTED: dict = {}
_FITTED_LOCK = threading.Lock()


def _recogniser(gallery_images, originals):
  """(FaceRecognizer with the crop learned on the attacker's photos, their descriptors, the
  originals' descriptors): once per data set in a process, like the classifier."""
  key = ('face', memo.key({'gallery': gallery_images, 'originals': originals}, {}))
  with _FITTED_LOCK:
    if key not in _FITTED:
      _FITTED.clear()  # one data set at a time: keep memory bounded
      recogniser = face_recognition.FaceRecognizer(face_recognition.fit_alignment(gallery_images))
      _FITTED[key] = (recogniser, recogniser.embed(gallery_images), recogniser.embed(originals))
    return _FITTED[key]


def _first_per_person(labels, n: int) -> np.ndarray:
  """Rows of the first `n` photos of every person (all rows when n is 0)."""
  if not n:
    return np.arange(len(labels))
  keep = [np.flatnonzero(labels == p)[:n] for p in np.unique(labels)]
  return np.sort(np.concatenate(keep))


def _face(ctx, settings) -> dict:
  label = settings.label
  own, test = ctx.images('attacker_train'), ctx.images('attacker_test')
  y_train, y_test = ctx.labels('attacker_train', label), ctx.labels('attacker_test', label)
  rows = np.arange(len(test))
  if settings.face_probes and settings.face_probes < len(test):
    rows = np.sort(
        np.random.default_rng(ctx.config.seed).permutation(len(test))[: settings.face_probes]
    )
  gallery_rows = _first_per_person(y_train, settings.face_gallery)
  y_train = y_train[gallery_rows]
  recogniser, gallery, originals = _recogniser(own[gallery_rows], test[rows])
  r = face_recognition.identify(originals, y_test[rows], gallery, y_train)
  out = {
      'face/originals': results.percent(
          r['top1'],
          r['top1_se'],
          label=f"{label} top-1 of dlib's face recogniser on the originals",
          role='raw',
          secret=label,
      )
  }
  details = {
      'alignment': dataclasses.asdict(recogniser.alignment),
      'probes': int(rows.size),
      'gallery': int(gallery_rows.size),
      'originals': r,
  }
  for method, (idx, images) in ctx.reconstructions().items():
    keep = np.isin(idx, rows)
    idx = idx[keep]
    probes = recogniser.embed(np.asarray(images)[keep])
    r = face_recognition.identify(probes, y_test[idx], gallery, y_train)
    out[f'face/{method}'] = results.percent(
        r['top1'],
        r['top1_se'],
        label=f"{label} top-1 of dlib's face recogniser on {method} reconstructions",
        role='leak',
        secret=label,
    )
    tars = face_recognition.verify(probes, y_test[idx], gallery, y_train, tuple(settings.fars))
    for far, t in tars.items():
      out[f'face/{method}/tar_at_far_{far}'] = results.percent(
          t['tar'],
          t['tar_se'],
          label=f"{method} reconstructions verified against the attacker's photos: TAR at FAR {far}",
          note='' if t['resolved'] else 'too few impostor pairs to resolve this FAR',
      )
    pooled = accounts.pooled_embedding_top1(
        probes, y_test[idx], gallery, y_train, tuple(settings.ks), ctx.config.seed
    )
    what = f'of the face recogniser on {method} reconstructions of accounts'
    metrics = shared.pooled_metrics(pooled, settings.min_people, what, label)
    out.update({f'face/{method}/{k}': m for k, m in metrics.items()})
    details[method] = {
        'identify': r,
        'verify': tars,
        'pooled': {str(k): v for k, v in pooled.items()},
    }
  ctx.detail(face=details)
  return out


def run(ctx, setting, settings) -> dict:
  family, label = settings.family, settings.label
  overrides = ctx.config.attacker_overrides.to_dict().get(family, {})
  x_train = shared.pixels(ctx, 'attacker_train')
  x_test = shared.pixels(ctx, 'attacker_test')
  y_train, y_test = ctx.labels('attacker_train', label), ctx.labels('attacker_test', label)
  classifier = fit_identity_classifier(
      x_train, y_train, family=family, seed=ctx.config.seed, **overrides
  )
  everything = reidentify(classifier, x_test, y_test, {})[ORIGINALS]
  out = {
      'originals': results.percent(
          everything['top1'],
          everything['top1_se'],
          label=f'{label} top-1 of a {family} pixel classifier on the originals (ceiling)',
      )
  }
  for method, (idx, images) in ctx.reconstructions().items():
    flat = np.asarray(images, np.float32).reshape(len(idx), -1)
    r = reidentify(classifier, x_test[idx], y_test[idx], {method: flat})
    m = r['methods'][method]
    out[method] = results.percent(
        m['top1'],
        m['top1_se'],
        label=f'{label} top-1 of a {family} pixel classifier on {method} reconstructions',
        role='leak',
        secret=label,
    )
    ctx.detail(**{method: {'ceiling_on_the_same_images': r[ORIGINALS]['top1'], **m}})
  if settings.face:
    out.update(_face(ctx, settings))
  return out
