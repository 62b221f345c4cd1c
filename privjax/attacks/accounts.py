"""Attacks that see many uploads of one account.

In the paper's setting the cloud receives many photos per account and knows which account sent
them, so an attacker need not name a person from one photo:

* Several photos per account (``pooled_top1``, ``pooled_embedding_top1``): ``k`` different
  attacker-test photos of one person make a group (``account_groups``: each person's photos
  shuffled with the seed and cut into ``floor(n / k)`` disjoint groups, so no photo is used twice
  for one k; people with fewer than ``k`` photos drop out). A classifier's scores are pooled as
  the mean log-probability per class (the product of the per-photo likelihoods, as for
  independent photos); the face recogniser's as the mean descriptor, matched like one probe
  (``face_recognition.person_scores``). Each k reports top-1 with ``metrics.clustered_se`` over
  people: the groups of one person share that person's difficulty, and people with many photos
  contribute many groups, so a binomial over groups (``top1_se_binomial``, given beside it)
  understates the error.
* One photo uploaded ``k`` times with fresh device noise (``averaged_uploads``): the attacker
  averages the k uploads, whose noise has variance sigma^2 / k. The attacker is trained on such
  averages as well (made from its training features the same way): that is the distribution it
  sees.

Must not import ``privjax.train``, ``privjax.data`` or ``privjax.evaluate``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from privjax.attacks import face_recognition
from privjax.attacks.common import ClassMap
from privjax.metrics import classification
from privjax.privacy import transforms

DEFAULT_KS = (1, 2, 4, 8)


def account_groups(labels, k: int, seed: int) -> np.ndarray:
  """Photo indices [G, k] of the groups for ``k`` (see the module docstring), people in sorted
  order; deterministic in (``labels``, ``k``, ``seed``), and each k shuffles on its own."""
  labels = np.asarray(labels).reshape(-1)
  if isinstance(k, bool) or int(k) != k or k < 1:
    raise ValueError(f"k must be a positive integer, got {k}")
  k = int(k)
  rng = np.random.default_rng([seed, k])
  groups = []
  for person in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == person))
    n = idx.size // k * k
    groups.append(idx[:n].reshape(-1, k))
  return np.concatenate(groups) if groups else np.zeros((0, k), np.int64)


def _record(correct, people, k: int, num_classes: int) -> dict:
  correct, people = np.asarray(correct, bool), np.asarray(people)
  out = {
      "k": k,
      "num_people": int(np.unique(people).size),
      "num_groups": int(correct.size),
      "chance_top1": classification.chance_accuracy(None, 1, num_classes),
  }
  if correct.size == 0:
    return {**out, "top1": None, "top1_se": None, "top1_se_binomial": None}
  top1 = float(np.mean(correct))
  return {
      **out,
      "top1": top1,
      "top1_se": classification.clustered_se(correct, people),
      "top1_se_binomial": classification.binomial_se(top1, correct.size),
  }


def _check_ks(ks) -> list[int]:
  ks = list(ks)
  if not ks:
    raise ValueError("give at least one k")
  return ks


def pooled_top1(
    log_probs,
    labels,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
    *,
    class_map: ClassMap | None = None,
) -> dict:
  """{k: record} of a classifier that pools ``k`` photos of an account (module docstring).

  ``log_probs`` [N, C] are per-photo log-probabilities (logits serve as well: a photo's
  log-softmax differs from its logits by one constant over the classes, so the pooled ranking is
  the same); ``labels`` [N] are the people, as the attacker's column indices or, with
  ``class_map`` (the attacker's), as the original ids; a person the attacker never saw is a miss
  (give original ids then: column labels of -1 would pool different unknown people together).
  A record has ``k``, ``top1``, ``top1_se`` (clustered by person), ``top1_se_binomial``,
  ``num_people``, ``num_groups`` and ``chance_top1`` (1 / C); with no group, the accuracies are
  None.
  """
  log_probs = jax.nn.log_softmax(jnp.asarray(log_probs, jnp.float32), axis=-1)
  labels = np.asarray(labels).reshape(-1)
  if log_probs.ndim != 2 or log_probs.shape[0] != labels.size:
    raise ValueError(f"need log-probs [N, C] and labels [N], got {log_probs.shape}, {labels.shape}")
  if class_map is None:
    if labels.size and (labels.min() < -1 or labels.max() >= log_probs.shape[1]):
      raise ValueError(f"column labels must lie in [-1, {log_probs.shape[1]}); pass class_map")
    columns = labels
  else:
    columns = class_map.encode(labels)
  out = {}
  for k in _check_ks(ks):
    groups = account_groups(labels, k, seed)
    people = labels[groups[:, 0]]
    if groups.shape[0] == 0:
      out[k] = _record([], people, k, log_probs.shape[1])
      continue
    pooled = jnp.mean(log_probs[jnp.asarray(groups)], axis=1)
    correct = classification.topk_correct(pooled, jnp.asarray(columns[groups[:, 0]]), 1)
    out[k] = _record(np.asarray(correct), people, k, log_probs.shape[1])
  return out


def pooled_embedding_top1(
    embeddings,
    labels,
    gallery_embeddings,
    gallery_labels,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int = 0,
) -> dict:
  """{k: record} of the face recogniser on accounts: the mean descriptor of ``k`` photos of one
  person is the probe, ranked against the gallery's people by ``face_recognition.person_scores``
  (nearest gallery descriptor). Records as ``pooled_top1``'s (chance: 1 / gallery people); a
  person missing from the gallery is a miss."""
  embeddings = np.asarray(embeddings, np.float32)
  labels = np.asarray(labels).reshape(-1)
  if embeddings.ndim != 2 or embeddings.shape[0] != labels.size:
    raise ValueError(f"need embeddings [N, D] and labels [N], got {embeddings.shape}")
  num_people = np.unique(np.asarray(gallery_labels)).size
  out = {}
  for k in _check_ks(ks):
    groups = account_groups(labels, k, seed)
    people = labels[groups[:, 0]]
    if groups.shape[0] == 0:
      out[k] = _record([], people, k, num_people)
      continue
    scores, class_map = face_recognition.person_scores(
        embeddings[groups].mean(axis=1), gallery_embeddings, gallery_labels
    )
    correct = classification.topk_correct(scores, jnp.asarray(class_map.encode(people)), 1)
    out[k] = _record(np.asarray(correct), people, k, num_people)
  return out


def averaged_uploads(key, clean, variance, k: int):
  """The mean of ``k`` noisy uploads of each of ``clean`` [N, ...]: ``clean`` plus Gaussian noise
  of variance ``variance / k`` (``variance``: a scalar or per-feature array, broadcast).

  One draw of variance sigma^2 / k rather than k draws averaged: the device noise here is
  Gaussian (the evaluation's ``transforms.add_gaussian_noise``; ``learned_noise``'s
  ``sigma_i * rms(z) * eps``, whose scale depends on the clean features only), and the mean of k
  independent N(0, s^2) draws is exactly N(0, s^2 / k): the same distribution from 1 / k of the
  random numbers and memory. A noise that is not Gaussian would need its k draws averaged.
  """
  if isinstance(k, bool) or int(k) != k or k < 1:
    raise ValueError(f"k must be a positive integer, got {k}")
  variance = np.asarray(variance, np.float64)
  if not np.all(np.isfinite(variance) & (variance >= 0)):
    raise ValueError("noise variance must be finite and >= 0")
  return transforms.add_gaussian_noise(key, clean, jnp.asarray(variance / int(k), jnp.float32))
