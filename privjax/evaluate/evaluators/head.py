"""Utility: the trained cloud head's primary accuracy on the uploaded features of the test split
(mapped back through PCA, as the paper does). Result: `primary_head_accuracy`, at every setting."""

from __future__ import annotations

from privjax.evaluate import protocol

SETTINGS = 'each'


def enabled(eval_config) -> bool:
  return True  # the report's utility column; it costs one pass of the head


def run(ctx, setting) -> dict:
  z = setting.noisy[ctx.test_split]
  return {
      'primary_head_accuracy': protocol.head_accuracy(
          ctx.run, setting.pca, z, ctx.labels(ctx.test_split, ctx.primary)
      )
  }
