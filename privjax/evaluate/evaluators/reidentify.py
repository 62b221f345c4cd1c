"""Re-identification of reconstructions (privjax.attacks.reidentify): an identity classifier trained
on the attacker's raw attacker-train images, applied to every reconstruction method's images of
attacker-test (the methods that ran before it: 'decoder', 'inversion'), and to the originals, the
ceiling. On the originals with the same family it is the raw-pixel attacker (`pixel_reference`).

Config section `reidentify`: enabled, label (the identity label), family (an attacker family on
pixels; its `attacker_overrides` apply). Result `reidentify`: family, `originals` (top-1 on every
attacker-test image), `methods` {method: top-1 on its images, with `ceiling`: the same
classifier's top-1 on the originals of the same images}, chance and majority-class rates; once.
"""

from __future__ import annotations

import numpy as np

from privjax.attacks.reidentify import ORIGINALS, fit_identity_classifier, reidentify
from privjax.data import pipeline
from privjax.errors import DataError, EvalError
from privjax.evaluate import memo
from privjax.evaluate.evaluators import pixel_reference

SETTINGS = 'once'
CEILING = ('top1', 'top1_se', 'top5', 'top5_se', 'num_test')


def check(run, eval_config) -> None:
  try:
    pipeline.label_num_classes(run.builder, eval_config.reidentify.label)
  except DataError as e:
    raise EvalError(f'reidentify: {e}') from None
  if eval_config.reidentify.family == 'transfer':
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


def run(ctx, setting) -> dict:
  c = ctx.config.reidentify
  family = c.family
  overrides = ctx.config.attacker_overrides.to_dict().get(family, {})
  x_train = pixel_reference.pixels(ctx, 'attacker_train')
  x_test = pixel_reference.pixels(ctx, 'attacker_test')
  y_train, y_test = ctx.labels('attacker_train', c.label), ctx.labels('attacker_test', c.label)
  classifier = _classifier(x_train, y_train, family, ctx.config.seed, overrides)
  everything = reidentify(classifier, x_test, y_test, {})
  out = {'family': family, 'label': c.label, **everything, 'methods': {}}
  for method, (idx, images) in ctx.store.get('reconstructions', {}).items():
    flat = np.asarray(images, np.float32).reshape(len(idx), -1)
    r = reidentify(classifier, x_test[idx], y_test[idx], {method: flat})
    out['methods'][method] = {
        **r['methods'][method],
        'ceiling': {k: r[ORIGINALS][k] for k in CEILING},
    }
  return {'reidentify': out}
