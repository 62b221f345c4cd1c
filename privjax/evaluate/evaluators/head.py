"""Utility: the trained cloud head's primary accuracy on the test split's uploads (mapped back
through PCA, as the paper does). Reads a feature store as well as an array."""

from __future__ import annotations

import numpy as np

from privjax.evaluate import shared, sources

WHERE = 'each'
STORES = True


def run(ctx, setting, settings) -> dict:
  z = setting.uploaded(ctx.test_split)
  if isinstance(z, sources.Uploads):
    logits = np.concatenate(
        [shared.head_logits(ctx.run, None, x) for _, x in z.store.batches(z.rows, 512)]
    )
  else:
    logits = shared.head_logits(ctx.run, setting.pca, z)
  labels = ctx.labels(ctx.test_split, ctx.primary)
  correct = float(np.mean(np.argmax(logits, axis=-1) == labels))
  return {
      'accuracy': shared.accuracy(
          correct, len(labels), label=f'{ctx.primary} accuracy, cloud head', role='utility'
      )
  }
