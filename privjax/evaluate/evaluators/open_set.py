"""Open-set identity (privjax.attacks.open_set): the attacker learns an embedding on its own people
(the MLP attacker's penultimate layer, trained on attacker-train uploads) and matches people it
never saw: the model owner's test people, each split into gallery and probe images
(`gallery_per_person` gallery images, drawn with the eval seed). TAR at each FAR and gallery top-1,
at the settings where it runs (`where`: 'baseline' or 'each')."""

from __future__ import annotations

import dataclasses

from privjax.attacks import open_set
from privjax.data import pipeline
from privjax.errors import DataError, EvalError
from privjax.metrics import results

WHERE = 'baseline'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'baseline'
  label: str = 'identity'
  hidden: tuple = (512,)
  fars: tuple = (1e-2, 1e-3)
  gallery_per_person: int = 1
  mlp: dict = dataclasses.field(default_factory=dict)  # fit_mlp's other settings (max_epochs...)


def check(run, settings, eval_config) -> None:
  try:
    pipeline.label_num_classes(run.builder, settings.label)
  except DataError as e:
    raise EvalError(f'open_set: {e}') from None


def run(ctx, setting, settings) -> dict:
  seen = ctx.labels('attacker_train', settings.label)
  embed, _ = open_set.fit_embedder(
      setting.uploaded('attacker_train'),
      seen,
      hidden=tuple(settings.hidden),
      seed=ctx.config.seed,
      **dict(settings.mlp),
  )
  try:
    r = open_set.open_set_identity(
        embed,
        setting.uploaded(ctx.test_split),
        ctx.labels(ctx.test_split, settings.label),
        seed=ctx.config.seed,
        fars=tuple(settings.fars),
        gallery_per_person=int(settings.gallery_per_person),
        seen=seen,
    )
  except ValueError as e:  # people shared with the attacker, or nobody with two images
    raise EvalError(f'open_set on {ctx.test_split}: {e}') from None
  ctx.detail(**r)
  out = {}
  for far, t in r['tar_at_far'].items():
    note = '' if t['resolved'] else 'too few impostor pairs to resolve this FAR'
    out[f'tar_at_far_{far}'] = results.percent(
        t['tar'], t['tar_se'], label=f'open-set {settings.label}: TAR at FAR {far}', note=note
    )
  out['gallery_top1'] = results.percent(
      r['gallery_top1'],
      r['gallery_top1_se'],
      label=f'open-set {settings.label}: gallery top-1 of unseen people',
  )
  out['chance'] = results.percent(
      r['chance_top1'], label=f'open-set {settings.label}: gallery top-1, chance'
  )
  return out
