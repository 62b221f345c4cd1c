"""Feature transforms applied to the cut features before they leave the device.

Lives here:
  * ``TransformSpec`` / ``parse_transform`` -- the ``'none' | 'pca:k'`` config strings (the PCA
    itself is ``privjax.privacy.pca``).
  * ``add_gaussian_noise`` -- the isotropic Gaussian perturbation of the *transformed* features, as
    the device adds it (jax, inside jitted code).
  * ``upload_noise`` -- the same perturbation as the evaluation draws it for the uploads it
    attacks: a function of (seed, stream, row), so every pass over a split sees the same uploads,
    whether the split is in memory or read from disk in batches.

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``:
transforms are shared by training, evaluation and attacks and have to stay
free of model/dataset dependencies (and import cycles).
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class TransformSpec:
  """Parsed transform config: ``kind`` is ``'none'`` or ``'pca'``."""

  kind: str
  k: int | None = None

  def __post_init__(self):
    if self.kind == "none":
      if self.k is not None:
        raise ValueError("TransformSpec(kind='none') takes no k")
    elif self.kind == "pca":
      if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
        raise ValueError(f"TransformSpec(kind='pca') needs a positive integer k, got {self.k!r}")
    else:
      raise ValueError(f"unknown transform kind {self.kind!r}; valid kinds: 'none', 'pca'")

  def __str__(self) -> str:
    return "none" if self.kind == "none" else f"pca:{self.k}"


_VALID_FORMS = "valid forms: 'none', 'pca:K' with K a positive integer (e.g. 'pca:16')"


def parse_transform(spec: str) -> TransformSpec:
  """Parse ``'none'`` or ``'pca:K'``; round-trips with ``str(TransformSpec)``."""
  if not isinstance(spec, str):
    raise ValueError(f"transform spec must be a string, got {spec!r}; {_VALID_FORMS}")
  s = spec.strip()
  if s == "none":
    return TransformSpec("none")
  m = re.fullmatch(r"pca:([0-9]+)", s)
  if m and int(m.group(1)) >= 1:
    return TransformSpec("pca", int(m.group(1)))
  raise ValueError(f"invalid transform spec {spec!r}; {_VALID_FORMS}")


def add_gaussian_noise(key, z, variance: float):
  """Return ``z + sqrt(variance) * N(0, I)``; ``variance == 0`` returns ``z``.

  ``variance`` may be a traced value inside ``jit``; the range check then
  only happens when it is concrete.
  """
  z = jnp.asarray(z)
  if not jnp.issubdtype(z.dtype, jnp.floating):
    z = z.astype(jnp.float32)
  try:
    v = float(variance)
  except (TypeError, jax.errors.ConcretizationTypeError):
    v = None
  if v is not None:
    if not math.isfinite(v) or v < 0:
      raise ValueError(f"noise variance must be finite and >= 0, got {variance}")
    if v == 0.0:
      return z
  noise = jax.random.normal(key, z.shape, z.dtype)
  return z + jnp.sqrt(jnp.asarray(variance, z.dtype)) * noise


def upload_noise(seed: int, stream: str, rows, dim: int, variance: float) -> np.ndarray:
  """Gaussian noise of variance ``variance`` for the uploads ``rows`` of ``stream``: [len(rows), dim].

  Row r's noise depends only on (``seed``, ``stream``, r), never on which other rows are drawn with
  it: an attacker that reads a split in batches, in any order and as often as it likes, sees the
  same uploads as one that holds the split in memory. ``stream`` names what is uploaded (for
  example the split and the setting), so different settings get independent noise.
  """
  if not math.isfinite(variance) or variance < 0:
    raise ValueError(f"noise variance must be finite and >= 0, got {variance}")
  rows = np.asarray(rows, np.int64).reshape(-1)
  out = np.zeros((rows.size, dim), np.float32)
  if variance == 0:
    return out
  stream_key = zlib.crc32(stream.encode())
  for i, r in enumerate(rows):
    out[i] = np.random.default_rng((seed, stream_key, int(r))).standard_normal(dim, np.float32)
  return out * np.float32(math.sqrt(variance))
