"""Re-identification of reconstructions (privjax.attacks.reidentify): an identity classifier trained
on the attacker's raw attacker-train images, applied to every reconstruction method's images of
attacker-test made before it at the same setting ('decoder', 'inversion'), and to the originals,
the ceiling. A reconstruction the classifier names is a leak of the uploads it came from.

Settings: `where` (as the reconstruction methods'), `label` (the identity label), `family` (an
attacker family on pixels; the eval config's `attacker_overrides` apply).
"""

from __future__ import annotations

import dataclasses

import numpy as np

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


def check(run, settings, eval_config) -> None:
  try:
    pipeline.label_num_classes(run.builder, settings.label)
  except DataError as e:
    raise EvalError(f'reidentify: {e}') from None
  if settings.family == 'transfer':
    raise EvalError('reidentify.family: the transfer attacker needs cut features, not pixels')


# The classifier depends only on the attacker's raw images, labels and settings, which every run of
# one data set shares: the runs a process evaluates in turn (the main job's three) fit it once.
_FITTED: dict = {}


def _classifier(x_train, y_train, family: str, seed: int, overrides: dict):
  key = memo.key(
      {'x': x_train, 'y': y_train}, {'family': family, 'seed': seed, 'overrides': overrides}
  )
  if key not in _FITTED:
    _FITTED.clear()  # one data set at a time: keep memory bounded
    _FITTED[key] = fit_identity_classifier(x_train, y_train, family=family, seed=seed, **overrides)
  return _FITTED[key]


def run(ctx, setting, settings) -> dict:
  family, label = settings.family, settings.label
  overrides = ctx.config.attacker_overrides.to_dict().get(family, {})
  x_train = shared.pixels(ctx, 'attacker_train')
  x_test = shared.pixels(ctx, 'attacker_test')
  y_train, y_test = ctx.labels('attacker_train', label), ctx.labels('attacker_test', label)
  classifier = _classifier(x_train, y_train, family, ctx.config.seed, overrides)
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
  return out
