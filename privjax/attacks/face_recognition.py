"""A pretrained face recogniser as the attacker: dlib's ResNet face descriptor.

The other attackers learn identity from the attacker's few photos per person. A recogniser
trained on millions of faces needs none of that: dlib's ``dlib_face_recognition_resnet_model_v1``
(a ResNet-29 with a metric loss, 99.38% on LFW verification) maps an aligned 150x150 face chip to
a 128-D descriptor in which photos of one person lie close (dlib's own threshold is a Euclidean
distance of 0.6). It bounds what any re-identification of originals or reconstructions can do.

* ``FaceRecognizer(alignment).embed(images)``: float images [N, S, S, 3] in [0, 1], any S, ->
  descriptors [N, 128] float32. Every image, original or reconstructed, goes through the same
  fixed crop (``Alignment``) to a 150x150 chip (``dlib.extract_image_chip``, bilinear), so a
  reconstruction is treated exactly like an original.
* ``WHOLE_IMAGE`` resizes the whole image to the chip; ``fit_alignment`` learns one fixed crop
  from the attacker's own training images: dlib's face detector and 5-point landmarks on each, the
  chip that ``dlib.get_face_chip_details`` (padding 0.25) would cut for it, averaged (centre,
  side, angle, in image-relative units so that it applies at any S).
* ``person_scores``: probe x person scores, minus the Euclidean distance from the probe to that
  person's nearest gallery descriptor. ``identify`` ranks the gallery's people by it (closed-set
  top-1 / top-5); ``verify`` thresholds it (open-set TAR at FAR, through ``open_set``'s
  ``genuine_and_impostor`` and ``tar_at_far``).

dlib-bin and face-recognition-models are the ``face`` extra (``pip install privjax[face]``); the
model files are located without importing ``face_recognition_models`` (its ``__init__`` imports
``pkg_resources``, which current setuptools no longer ships). Must not import ``privjax.train``,
``privjax.data`` or ``privjax.evaluate``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from importlib.util import find_spec
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from privjax.attacks import open_set
from privjax.attacks.common import ClassMap, make_class_map
from privjax.errors import EvalError
from privjax.metrics import classification

EMBEDDING_DIM = 128
CHIP_SIZE = 150  # the descriptor network's input side
CHIP_PADDING = 0.25  # dlib's default context around the landmarks
# dlib holds the GIL for a whole batch: small batches let another evaluation's thread run between
# them (privjax.experiments.runner), at no cost in speed and with the same descriptors.
EMBED_BATCH = 8
# The HOG face detector finds faces of about 80 px and larger: small images are upsampled to this.
DETECTOR_SIDE = 200
EDGE_INSET = 1e-3  # pixels
RECOGNIZER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
INSTALL_HINT = "the face recogniser needs the face extra: pip install privjax[face]"


def _models_dir() -> str:
  """The folder of face_recognition_models' weight files, found without importing the package."""
  spec = find_spec("face_recognition_models")
  if spec is None or find_spec("dlib") is None:
    raise EvalError(INSTALL_HINT)
  (package_dir,) = spec.submodule_search_locations
  return os.path.join(package_dir, "models")


def check_installed() -> None:
  """One line naming the extra when dlib or the model files are missing (nothing is loaded)."""
  _models_dir()


@functools.cache
def _dlib_models():
  """(dlib module, descriptor network, 5-point landmark model, face detector), loaded once."""
  folder = _models_dir()
  import dlib

  return (
      dlib,
      dlib.face_recognition_model_v1(os.path.join(folder, RECOGNIZER_FILE)),
      dlib.shape_predictor(os.path.join(folder, LANDMARKS_FILE)),
      dlib.get_frontal_face_detector(),
  )


def _as_uint8(images) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
    raise EvalError(f"images must be [N, S, S, 3], got shape {images.shape}")
  if images.shape[0] == 0:
    raise EvalError("no images to embed")
  if images.dtype == np.uint8:
    return np.ascontiguousarray(images)
  return np.clip(np.rint(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Alignment:
  """A fixed square crop: centre and side as fractions of the image side, angle in radians.

  Coordinates are image-relative (0 = the left / top edge of the first pixel, 1 = the right /
  bottom edge of the last), so one crop serves images of any size. ``num_fitted`` is how many
  training images it was averaged over (0 for ``WHOLE_IMAGE``).
  """

  center_x: float
  center_y: float
  side: float
  angle: float
  num_fitted: int = 0

  def chip_details(self, dlib, image_side: int):
    # Image-relative u maps to pixel coordinate u * S - 0.5 (pixel centres at integers); the
    # rectangle's corners map to the chip's corner pixels. A hair inside them: dlib paints a chip
    # pixel black when rounding puts it past the last pixel centre, which it did for the whole
    # image's bottom-right corner.
    half = (self.side * image_side - 1.0) / 2.0 - EDGE_INSET
    cx, cy = self.center_x * image_side - 0.5, self.center_y * image_side - 0.5
    rect = dlib.drectangle(cx - half, cy - half, cx + half, cy + half)
    return dlib.chip_details(rect, dlib.chip_dims(CHIP_SIZE, CHIP_SIZE), self.angle)


WHOLE_IMAGE = Alignment(center_x=0.5, center_y=0.5, side=1.0, angle=0.0)


def fit_alignment(images) -> Alignment:
  """The mean of dlib's own face chips on ``images`` (the attacker's training originals).

  Each image is upsampled for the detector to about ``DETECTOR_SIDE`` px, its largest detected
  face gets 5 landmarks and the chip ``get_face_chip_details`` cuts for them; images without a
  detected face are left out of the mean (``num_fitted`` counts the rest).
  """
  dlib, _, landmarks, detector = _dlib_models()
  images = _as_uint8(images)
  side = images.shape[1]
  upsample = max(0, math.ceil(math.log2(DETECTOR_SIDE / side)))
  chips = []
  for image in images:
    faces = detector(image, upsample)
    if not faces:
      continue
    face = max(faces, key=lambda r: r.area())
    rect_angle = dlib.get_face_chip_details(landmarks(image, face), CHIP_SIZE, CHIP_PADDING)
    r = rect_angle.rect  # (dlib's rect.center() rounds to whole pixels)
    chips.append(
        (
            ((r.left() + r.right()) / 2 + 0.5) / side,
            ((r.top() + r.bottom()) / 2 + 0.5) / side,
            (r.right() - r.left() + 1.0) / side,
            rect_angle.angle,
        )
    )
  if not chips:
    raise EvalError(f"no face was detected on any of the {len(images)} images")
  cx, cy, s, angle = np.mean(np.asarray(chips, np.float64), axis=0)
  return Alignment(float(cx), float(cy), float(s), float(angle), num_fitted=len(chips))


@dataclasses.dataclass
class FaceRecognizer:
  """dlib's descriptor network behind one fixed crop; ``seconds`` accumulates ``embed``'s time."""

  alignment: Alignment = WHOLE_IMAGE
  seconds: float = 0.0
  images_embedded: int = 0

  def chips(self, images) -> np.ndarray:
    """The 150x150 uint8 chips [N, 150, 150, 3] that ``embed`` feeds the network."""
    dlib = _dlib_models()[0]
    images = _as_uint8(images)
    details = self.alignment.chip_details(dlib, images.shape[1])
    return np.stack([dlib.extract_image_chip(image, details) for image in images])

  def embed(self, images) -> np.ndarray:
    """Descriptors [N, 128] float32 of float images [N, S, S, 3] in [0, 1] (or uint8)."""
    images = _as_uint8(images)
    _, network, _, _ = _dlib_models()
    start = time.perf_counter()
    out = np.empty((images.shape[0], EMBEDDING_DIM), np.float32)
    for s in range(0, images.shape[0], EMBED_BATCH):
      chips = list(self.chips(images[s : s + EMBED_BATCH]))
      out[s : s + len(chips)] = np.asarray(network.compute_face_descriptor(chips), np.float32)
    self.seconds += time.perf_counter() - start
    self.images_embedded += images.shape[0]
    return out


@jax.jit
def _squared_distances(probes, gallery):
  # |p - g|^2 = |p|^2 + |g|^2 - 2 p.g, clipped: rounding can make an exact match slightly negative.
  d2 = (
      jnp.sum(jnp.square(probes), axis=1)[:, None]
      + jnp.sum(jnp.square(gallery), axis=1)[None, :]
      - 2.0 * jnp.matmul(probes, gallery.T, precision=jax.lax.Precision.HIGHEST)
  )
  return jnp.maximum(d2, 0.0)


def person_scores(probe_embeddings, gallery_embeddings, gallery_labels):
  """(scores [P, people], ClassMap of the gallery's people): minus the Euclidean distance from
  each probe to the person's nearest gallery embedding (higher = more alike)."""
  probes = np.asarray(probe_embeddings, np.float32)
  gallery = np.asarray(gallery_embeddings, np.float32)
  gallery_labels = np.asarray(gallery_labels).reshape(-1)
  if probes.ndim != 2 or gallery.ndim != 2 or probes.shape[1] != gallery.shape[1]:
    raise EvalError(f"embeddings must be [N, D] alike, got {probes.shape} and {gallery.shape}")
  if gallery_labels.shape[0] != gallery.shape[0]:
    raise EvalError(f"{gallery_labels.shape[0]} gallery labels for {gallery.shape[0]} embeddings")
  class_map = make_class_map(gallery_labels)
  columns = jnp.asarray(class_map.encode(gallery_labels))
  d2 = _squared_distances(jnp.asarray(probes), jnp.asarray(gallery))
  nearest = jax.ops.segment_min(d2.T, columns, num_segments=class_map.num_classes).T
  return np.asarray(-jnp.sqrt(nearest)), class_map


def identify(probe_embeddings, probe_labels, gallery_embeddings, gallery_labels) -> dict:
  """Closed-set identification: each probe gets the gallery's people ranked by ``person_scores``.

  A probe whose person has no gallery image counts as a miss (``num_unknown`` of them). Returns
  top-1 / top-5 with binomial standard errors over the probes, uniform chance over the gallery's
  people and the counts.
  """
  scores, class_map = person_scores(probe_embeddings, gallery_embeddings, gallery_labels)
  return _identification(scores, class_map, probe_labels, np.asarray(gallery_labels).size)


def _identification(scores, class_map: ClassMap, probe_labels, num_gallery: int) -> dict:
  columns = class_map.encode(probe_labels)
  n = int(columns.size)
  out = {}
  for k in (1, 5):
    correct = classification.topk_correct(scores, jnp.asarray(columns), min(k, scores.shape[1]))
    top = float(jnp.mean(correct))
    out[f"top{k}"], out[f"top{k}_se"] = top, classification.binomial_se(top, n)
    out[f"chance_top{k}"] = classification.chance_accuracy(None, k, class_map.num_classes)
  out.update(
      num_probes=n,
      num_unknown=int(np.sum(columns < 0)),
      num_people=class_map.num_classes,
      num_gallery=int(num_gallery),
  )
  return out


def verify(
    probe_embeddings,
    probe_labels,
    gallery_embeddings,
    gallery_labels,
    fars: Sequence[float] = open_set.FARS,
) -> dict:
  """Open-set verification, e.g. of reconstructions (probes) against original photos (gallery).

  A pair is (probe, person): its score is ``person_scores``'. Genuine pairs: each probe with its
  own person, one per probe; impostor pairs: each probe with every other person of the gallery.
  Whether the gallery holds the very photos that were reconstructed (does the reconstruction
  match its own photo?) or other photos of the same people (does it match the person?) is the
  caller's choice. Every probe's person must be in the gallery. Returns ``{f'{far:g}':
  open_set.tar_at_far record}``.
  """
  scores, class_map = person_scores(probe_embeddings, gallery_embeddings, gallery_labels)
  genuine, impostor = open_set.genuine_and_impostor(scores, probe_labels, class_map)
  return {f"{far:g}": open_set.tar_at_far(genuine, impostor, far) for far in fars}
