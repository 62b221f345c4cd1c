"""Open-set identity: match people the attacker never saw, by an embedding learned on its own.

Closed-set attackers name one of the people they were trained on. Real re-identification is
open-set: an embedding learned on the attacker's own people is used on strangers, matching a
probe image against a gallery. Here:

* ``fit_embedder`` trains the MLP attacker (``mlp.fit_mlp``) on the attacker's people and
  returns its penultimate layer as the embedding (``mlp_embedder``); any function images ->
  vectors serves as well (the identity on features already embedded).
* ``gallery_probe_split`` splits the unseen people's images per person, deterministically from
  a seed: ``gallery_per_person`` images of each person enrol them, the rest are probes; every
  person with at least two images is in both parts, no image in both, and a person with a single
  image is left out (it could be neither matched nor impersonated fairly).
* ``cosine_scores``: a person's template is the mean of their L2-normalised gallery embeddings;
  a score is the cosine between a probe and a template, [probes, people].
* Verification, ``tar_at_far``: genuine scores are probe-vs-own-template, impostor scores
  probe-vs-every-other-template. The threshold at FAR f is the (k + 1)-th highest impostor score,
  k = floor(f * num_impostors), and a score is accepted when strictly above it, so at most k
  impostors pass (fewer on ties); TAR is the fraction of genuine scores accepted. With fewer than
  1 / f impostor scores the FAR cannot be resolved (k = 0): ``resolved`` says so.
* Identification, ``gallery_top1``: the probe's highest-scoring template is its own (ties ->
  the person listed first, never in the probe's favour).

``open_set_identity`` runs it all on the unseen people's images, with binomial standard errors
(``privjax.metrics.binomial_se``) on TAR and top-1.

Must not import ``privjax.train``, ``privjax.data`` or ``privjax.evaluate``: evaluators call it on
arrays, not the other way round.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from privjax.attacks.common import ClassMap, batched_apply, make_class_map
from privjax.attacks.mlp import MLP, fit_mlp
from privjax.attacks.transfer import ModuleAttacker
from privjax.metrics import classification

FARS = (1e-2, 1e-3)


def gallery_probe_split(labels, seed: int, gallery_per_person: int = 1):
  """(gallery_idx, probe_idx), sorted: per person ``gallery_per_person`` random images (at most
  all but one) to the gallery, the rest to the probes; people with one image in neither."""
  labels = np.asarray(labels).reshape(-1)
  if gallery_per_person < 1:
    raise ValueError(f"gallery_per_person must be at least 1, got {gallery_per_person}")
  rng = np.random.default_rng(seed)
  gallery, probe = [], []
  for person in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == person))
    if idx.size < 2:
      continue
    n_gallery = min(gallery_per_person, idx.size - 1)
    gallery.append(idx[:n_gallery])
    probe.append(idx[n_gallery:])
  if not gallery:
    raise ValueError("no person has two images: nothing to match")
  return np.sort(np.concatenate(gallery)), np.sort(np.concatenate(probe))


def _unit(v):
  v = jnp.asarray(v, jnp.float32).reshape(v.shape[0], -1)
  return v / jnp.maximum(jnp.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def cosine_scores(probe_embeddings, gallery_embeddings, gallery_labels):
  """(scores [P, people], ClassMap of the people): cosine of each probe with each template."""
  class_map = make_class_map(gallery_labels)
  columns = jnp.asarray(class_map.encode(gallery_labels))
  gallery = _unit(gallery_embeddings)
  sums = jax.ops.segment_sum(gallery, columns, num_segments=class_map.num_classes)
  templates = _unit(sums)
  return np.asarray(_unit(probe_embeddings) @ templates.T), class_map


def genuine_and_impostor(scores, probe_labels, class_map: ClassMap):
  """Genuine scores [P] (own template) and impostor scores [P * (people - 1)] (all others)."""
  scores = np.asarray(scores)
  columns = class_map.encode(probe_labels)
  if np.any(columns < 0):
    raise ValueError("every probe's person must be in the gallery")
  own = np.zeros(scores.shape, bool)
  own[np.arange(scores.shape[0]), columns] = True
  return scores[own], scores[~own]


def tar_at_far(genuine, impostor, far: float) -> dict:
  """TAR at the threshold that lets at most floor(far * num_impostors) impostors pass (see the
  module docstring); with its standard error, the threshold and the FAR actually reached."""
  genuine, impostor = np.asarray(genuine).ravel(), np.asarray(impostor).ravel()
  if not 0.0 < far < 1.0:
    raise ValueError(f"far must lie in (0, 1), got {far}")
  if genuine.size == 0 or impostor.size == 0:
    raise ValueError("TAR at FAR needs genuine and impostor scores")
  k = math.floor(far * impostor.size + 1e-9)  # 1e-3 * 1000 is 1, not 0.999...
  threshold = float(np.sort(impostor)[::-1][k])
  tar = float(np.mean(genuine > threshold))
  return {
      "tar": tar,
      "tar_se": classification.binomial_se(tar, genuine.size),
      "threshold": threshold,
      "far": float(np.mean(impostor > threshold)),
      "resolved": k >= 1,
      "num_genuine": int(genuine.size),
      "num_impostor": int(impostor.size),
  }


def gallery_top1(scores, probe_labels, class_map: ClassMap) -> float:
  """Fraction of probes whose highest-scoring template is their own person's."""
  columns = class_map.encode(probe_labels)
  return float(jnp.mean(classification.topk_correct(scores, columns, 1)))


def mlp_embedder(attacker: ModuleAttacker) -> Callable[..., np.ndarray]:
  """The MLP attacker's penultimate layer (after its ReLU; dropout is off) as a function of the
  same inputs the attacker takes, [N, ...] -> [N, hidden[-1]]."""
  model = attacker.module()
  if not isinstance(model, MLP) or len(model.hidden) == 0:
    raise ValueError("an embedding needs an MLP attacker with at least one hidden layer")
  graphdef, params, rest = attacker.graphdef, attacker.params, attacker.rest
  std = attacker.standardizer

  @jax.jit
  def embed(xb):
    h = xb.astype(jnp.float32) if std is None else std.apply(xb)
    h = h.reshape(h.shape[0], -1)
    for layer in nnx.merge(graphdef, params, rest).hidden:
      h = nnx.relu(layer(h))
    return h

  return lambda x: np.asarray(batched_apply(embed, np.asarray(x)))


def fit_embedder(x, y, *, hidden: Sequence[int] = (512,), seed: int = 0, **mlp_kw):
  """Train the MLP attacker on the attacker's own people (``mlp.fit_mlp``'s settings) and return
  ``(embed, attacker)``: its penultimate layer and the fitted attacker."""
  attacker = fit_mlp(x, y, hidden=hidden, seed=seed, **mlp_kw)
  return mlp_embedder(attacker), attacker


def open_set_identity(
    embed: Callable,
    images,
    labels,
    *,
    seed: int = 0,
    fars: Sequence[float] = FARS,
    gallery_per_person: int = 1,
    seen=None,
) -> dict:
  """Open-set scores of ``embed`` on ``images`` [N, ...] of people (``labels``) it never saw.

  ``seen``, if given, are the labels the embedding was trained on; a person among them is an
  error. Returns ``tar_at_far`` ({f'{far:g}': ``tar_at_far``'s record}), ``gallery_top1`` (with
  ``_se``), ``chance_top1`` (1 / people) and the counts of people, gallery and probe images.
  """
  labels = np.asarray(labels).reshape(-1)
  if seen is not None:
    overlap = np.intersect1d(labels, np.asarray(seen))
    if overlap.size:
      raise ValueError(f"open-set people must be unseen; {overlap.size} were seen: {overlap[:5]}")
  gallery, probe = gallery_probe_split(labels, seed, gallery_per_person)
  embeddings = np.asarray(embed(np.asarray(images)))
  scores, class_map = cosine_scores(embeddings[probe], embeddings[gallery], labels[gallery])
  genuine, impostor = genuine_and_impostor(scores, labels[probe], class_map)
  top1 = gallery_top1(scores, labels[probe], class_map)
  return {
      "tar_at_far": {f"{far:g}": tar_at_far(genuine, impostor, far) for far in fars},
      "gallery_top1": top1,
      "gallery_top1_se": classification.binomial_se(top1, probe.size),
      "chance_top1": classification.chance_accuracy(labels[gallery]),
      "num_people": class_map.num_classes,
      "num_gallery": int(gallery.size),
      "num_probe": int(probe.size),
  }
