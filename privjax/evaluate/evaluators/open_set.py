"""Open-set identity (privjax.attacks.open_set): the attacker learns an embedding on its own people
(the MLP attacker's penultimate layer, trained on attacker-train uploaded features) and matches
people it never saw: the model owner's test people, each split into gallery and probe images
(`gallery_per_person` gallery images, drawn with the eval seed). The closed-set attacker split is
untouched.

Config section `open_set`: enabled, settings ('each' or 'baseline'), label, hidden, fars,
gallery_per_person, mlp (fit_mlp's other settings). Result `open_set`: TAR at each FAR
(`tar_at_far` {'0.01': {tar, tar_se, threshold, far, resolved, ...}}), gallery top-1 (with `_se`),
chance and the counts, in the sweep entry of each setting it runs at.
"""

from __future__ import annotations

from privjax.attacks import open_set
from privjax.data import pipeline
from privjax.errors import DataError, EvalError

SETTINGS = 'each'


def check(run, eval_config) -> None:
  try:
    pipeline.label_num_classes(run.builder, eval_config.open_set.label)
  except DataError as e:
    raise EvalError(f'open_set: {e}') from None


def run(ctx, setting) -> dict:
  c = ctx.config.open_set
  seen = ctx.labels('attacker_train', c.label)
  embed, _ = open_set.fit_embedder(
      setting.noisy['attacker_train'],
      seen,
      hidden=tuple(c.hidden),
      seed=ctx.config.seed,
      **c.mlp.to_dict(),
  )
  try:
    result = open_set.open_set_identity(
        embed,
        setting.noisy[ctx.test_split],
        ctx.labels(ctx.test_split, c.label),
        seed=ctx.config.seed,
        fars=tuple(c.fars),
        gallery_per_person=int(c.gallery_per_person),
        seen=seen,
    )
  except ValueError as e:  # people shared with the attacker, or nobody with two images
    raise EvalError(f'open_set on {ctx.test_split}: {e}') from None
  return {'open_set': result}
