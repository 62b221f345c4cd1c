"""The cut features on the test split: their norms and the distances of same- and different-label
pairs (4,000 random pairs), the units the Siamese margin is in. Reads a feature store as well as an
array (a sample of its rows)."""

from __future__ import annotations

import dataclasses

import numpy as np

from privjax.evaluate import shared
from privjax.metrics import results

WHERE = 'once'
STORES = True


@dataclasses.dataclass(frozen=True)
class Settings:
  pairs: int = 4000


def _quantiles(x) -> dict:
  if len(x) == 0:
    return {}
  q = np.percentile(x, [5, 25, 50, 75, 95])
  return {'mean': float(x.mean()), **{f'p{p}': float(v) for p, v in zip((5, 25, 50, 75, 95), q)}}


def run(ctx, setting, settings) -> dict:
  split = ctx.split(ctx.test_split)
  pos, f = split.sample(settings.pairs)
  labels = split.labels[ctx.primary][pos]
  norms, d, same = shared.pair_distances(f, labels, settings.pairs)
  ctx.detail(
      dims=int(np.prod(f.shape[1:])),
      norm=_quantiles(norms),
      dist_same=_quantiles(d[same]),
      dist_diff=_quantiles(d[~same]),
  )
  out = {'norm': results.Metric(float(np.median(norms)), label='feature norm (median)')}
  for key, mask, what in (('same', same, 'same'), ('different', ~same, 'different')):
    if mask.any():
      out[f'distance_{key}'] = results.Metric(
          float(np.median(d[mask])), label=f'distance of {what}-{ctx.primary} pairs (median)'
      )
  return out
