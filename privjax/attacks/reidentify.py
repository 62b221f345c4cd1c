"""Re-identification of reconstructions: can the person be named from a reconstructed image?

PSNR and SSIM say little about whether a reconstruction reveals *who* it is. Here an identity
classifier is trained on the attacker's own raw images (any family of ``registry.ATTACKERS`` on
the pixels: ``linear``, ``mlp``, ``pca_linear``...) and applied to each reconstruction method's
output (the learned decoder, white-box inversion...) on attacker-test images. The same classifier
on the original test images is the ceiling: a reconstruction that keeps everything the classifier
uses scores as high; one that keeps nothing of the person scores at chance.

``fit_identity_classifier`` fits the classifier; ``reidentify`` scores it on the originals and
on every method's reconstructions, with binomial standard errors and the chance and
majority-class baselines. On the originals the numbers are exactly those of
``registry.run_attack`` with the same family, data and seed.

Must not import ``privjax.train``, ``privjax.data`` or ``privjax.evaluate``: evaluators call it on
arrays, not the other way round.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from privjax.attacks.common import evaluate_attacker
from privjax.attacks.registry import fit
from privjax.metrics import classification

ORIGINALS = "originals"


def fit_identity_classifier(images, labels, *, family: str = "linear", seed: int = 0, **overrides):
  """An attacker of ``family`` fitted on the attacker's raw ``images`` [N, H, W, C] and identity
    ``labels`` [N]; ``overrides`` are the family's settings (as for ``registry.run_attack``). The
  attacker on raw pixels with the same family, data and seed is the same fit (``registry.fit``)."""
  return fit(family, np.asarray(images, np.float32), labels, seed=seed, **overrides)[0]


def reidentify(classifier: Any, originals, labels, reconstructions: Mapping[str, Any]) -> dict:
  """Top-1 of ``classifier`` on each method's reconstructions of ``originals`` [N, H, W, C].

  ``reconstructions`` maps a method name to its images, the same shape as ``originals`` and in
  the same order (labels ``labels`` [N]). Returns ``{'originals': scores, 'methods': {name:
  scores}, 'chance_top1', 'majority_top1'}`` where each ``scores`` is
  ``common.evaluate_attacker``'s (``top1``, ``top1_se``, ``top5``, ``top5_se``, ``num_test``,
  ``log_rank``); ``originals`` is the ceiling. Chance is uniform guessing over the classifier's
  classes (the people in its training data), majority the best constant guess on ``labels``.
  """
  originals = np.asarray(originals, np.float32)
  if ORIGINALS in reconstructions:
    raise ValueError(f"{ORIGINALS!r} names the ceiling; give the method another name")
  for name, images in reconstructions.items():
    if np.shape(images) != originals.shape:
      raise ValueError(
          f"reconstructions {name!r} have shape {np.shape(images)}, the originals {originals.shape}"
      )
  num_classes = classifier.class_map.num_classes
  return {
      ORIGINALS: evaluate_attacker(classifier, originals, labels),
      "methods": {
          name: evaluate_attacker(classifier, np.asarray(images, np.float32), labels)
          for name, images in reconstructions.items()
      },
      "chance_top1": classification.chance_accuracy(labels, 1, num_classes),
      "majority_top1": classification.majority_accuracy(labels),
  }
