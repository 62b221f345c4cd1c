"""Content digests of prepared data sets, and the check that a run sees the data it was trained on.

What lives here:

* ``ContentHash`` -- what a builder feeds while it prepares a data set: a header (what shapes the
  pixels: image size, crop, the builder's version) and, split by split in row order, each example's
  content (the sha256 of its source file's bytes, or of its pixels for generated data) and its
  labels by class name.  Never a path: a moved folder keeps its digest; an edited CSV (other people,
  other labels, other splits) or an edited photo changes it.  The builder stores the result in the
  prepared data set's metadata.json (``digest``), once, at preparation.
* ``of_builder`` -- that stored digest (None for a data set no privjax builder prepared).

A run records the digest of its data (``dataset.digest`` in its config.json and every checkpoint's
config, privjax.train.loop); ``privjax.data.pipeline.check_run_data`` compares the two when a run
is resumed or evaluated.

Must import nothing from privjax (nor TensorFlow, TFDS or jax): the builders import it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping

METADATA_KEY = 'digest'
LENGTH = 20  # hex characters shown and stored: 80 bits name a data set without ambiguity


class ContentHash:
  """The digest of a data set's content, fed example by example in split and row order."""

  def __init__(self, **header):
    self._hash = hashlib.sha256(_line(header))

  def add(self, split: str, content_sha256: str, labels: Mapping[str, str]) -> None:
    self._hash.update(_line([split, content_sha256, dict(labels)]))

  def hexdigest(self) -> str:
    return self._hash.hexdigest()[:LENGTH]


def _line(value) -> bytes:
  return json.dumps(value, sort_keys=True, separators=(',', ':')).encode() + b'\n'


def of_builder(builder) -> str | None:
  """The content digest stored with a prepared data set, None when it has none."""
  value = builder.info.metadata.get(METADATA_KEY) if builder.info.metadata else None
  return str(value) if value else None
