"""Features on disk in shards, read back in bounded pieces: the store the streaming attackers train from.

At VGG-16's ``conv4_3`` (28 x 28 x 512 = 401,408 dimensions) an LFW-sized split is ~10 GB in
float16 and ~21 GB in float32, more than an evaluation machine should have to hold. A
``FeatureStore`` is a directory::

    store.json            format, feature shape, dtype, and each shard's file and row count
    shard_00000.npy ...   [rows, D] features in the store's dtype (float16 or float32), rows in order
    labels.npz            [N] integer label arrays by name (small; loaded whole)

``ShardWriter`` appends rows and writes a shard whenever ``shard_bytes`` are buffered, so writing
holds at most one shard. Readers open a shard with ``np.load(mmap_mode='r')`` only for the copy
they need and drop the map straight after, so the file pages a read touched do not stay mapped
(a memory map that stays open keeps counting them in the process's resident set). What a read
returns is all that stays in memory: ``rows`` (a gather of rows, in the store's dtype, for
minibatches) and ``columns`` (a block of columns of many rows, for the Gram matrix of
``privjax.attacks.streaming``). ``rows_within`` turns a byte budget into a batch size.

Plain numpy and the standard library (errors come from ``privjax.errors``); no jax, so the store can
be written by any process. Must not import ``privjax.train``, ``privjax.data`` or
``privjax.evaluate``: the evaluation writes stores, the store does not know about it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterator, Sequence

import numpy as np

from privjax.errors import DataError, RunError

FORMAT = "privjax.feature_store/1"
MANIFEST = "store.json"
LABELS = "labels.npz"
DTYPES = ("float16", "float32")
DEFAULT_SHARD_BYTES = 256 << 20


def _shard_name(i: int) -> str:
  return f"shard_{i:05d}.npy"


class ShardWriter:
  """Writes features [n, *feature_shape] and their labels to a new store directory.

  ``with ShardWriter(path, feature_shape) as w: w.write(x, identity=y)``; the manifest is written
  last (``close``), so a directory without ``store.json`` is an unfinished store and no reader
  takes it for a whole one. An existing store, or any non-empty directory, is never overwritten.
  """

  def __init__(
      self,
      directory: str | os.PathLike,
      feature_shape: Sequence[int],
      *,
      dtype: str = "float16",
      shard_bytes: int = DEFAULT_SHARD_BYTES,
  ):
    if str(np.dtype(dtype)) not in DTYPES:
      raise DataError(f"feature store dtype {dtype!r} is not supported; valid: {', '.join(DTYPES)}")
    self.directory = os.fspath(directory)
    if os.path.isdir(self.directory) and os.listdir(self.directory):
      raise RunError(f"{self.directory} is not empty; a feature store is never written over")
    os.makedirs(self.directory, exist_ok=True)
    self.feature_shape = tuple(int(s) for s in feature_shape)
    self.dim = int(np.prod(self.feature_shape))
    self.dtype = np.dtype(dtype)
    row_bytes = self.dim * self.dtype.itemsize
    self.shard_rows = max(1, int(shard_bytes) // row_bytes)
    self._buffer = np.empty((self.shard_rows, self.dim), self.dtype)
    self._filled = 0
    self._shards: list[dict] = []
    self._labels: dict[str, list[np.ndarray]] = {}
    self._closed = False

  def __enter__(self) -> "ShardWriter":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()

  def write(self, features, **labels) -> None:
    """Append rows; ``labels`` are [n] integer arrays, the same names on every call."""
    if self._closed:
      raise RunError(f"feature store {self.directory} is already closed")
    x = np.asarray(features)
    n = x.shape[0]
    x = x.reshape(n, -1)
    if x.shape[1] != self.dim:
      raise DataError(f"features of shape {features.shape[1:]} do not match {self.feature_shape}")
    if self._labels and set(labels) != set(self._labels):
      raise DataError(
          f"labels {sorted(labels)} differ from the first write's {sorted(self._labels)}"
      )
    for name, values in labels.items():
      values = np.asarray(values).reshape(-1)
      if values.shape[0] != n or not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"label {name!r} must be {n} integers, got {values.dtype} {values.shape}")
      self._labels.setdefault(name, []).append(values.astype(np.int64))
    start = 0
    while start < n:
      take = min(n - start, self.shard_rows - self._filled)
      self._buffer[self._filled : self._filled + take] = x[start : start + take]
      self._filled += take
      start += take
      if self._filled == self.shard_rows:
        self._flush()

  def _flush(self) -> None:
    if not self._filled:
      return
    name = _shard_name(len(self._shards))
    path = os.path.join(self.directory, name)
    with open(path + ".tmp", "wb") as f:
      np.save(f, self._buffer[: self._filled])
    os.replace(path + ".tmp", path)
    self._shards.append({"file": name, "rows": int(self._filled)})
    self._filled = 0

  def close(self) -> "FeatureStore":
    if self._closed:
      return FeatureStore(self.directory)
    self._flush()
    self._buffer = None
    labels = {k: np.concatenate(v) for k, v in self._labels.items()}
    with open(os.path.join(self.directory, LABELS), "wb") as f:
      np.savez(f, **labels)
    manifest = {
        "format": FORMAT,
        "feature_shape": list(self.feature_shape),
        "dtype": str(self.dtype),
        "num_rows": int(sum(s["rows"] for s in self._shards)),
        "shards": self._shards,
        "labels": sorted(labels),
    }
    tmp = os.path.join(self.directory, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
      json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(self.directory, MANIFEST))
    self._closed = True
    return FeatureStore(self.directory)


@dataclasses.dataclass(frozen=True)
class FeatureStore:
  """A finished store, opened read-only. Row indices are global (0..num_rows-1, write order)."""

  directory: str

  def __post_init__(self):
    path = os.path.join(self.directory, MANIFEST)
    if not os.path.exists(path):
      raise DataError(f"{self.directory} is not a finished feature store (no {MANIFEST})")
    with open(path) as f:
      manifest = json.load(f)
    if manifest.get("format") != FORMAT:
      raise DataError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    object.__setattr__(self, "_manifest", manifest)
    rows = [s["rows"] for s in manifest["shards"]]
    object.__setattr__(self, "_offsets", np.concatenate([[0], np.cumsum(rows)]).astype(np.int64))

  @property
  def feature_shape(self) -> tuple[int, ...]:
    return tuple(self._manifest["feature_shape"])

  @property
  def dim(self) -> int:
    return int(np.prod(self.feature_shape))

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(self._manifest["dtype"])

  @property
  def num_rows(self) -> int:
    return int(self._manifest["num_rows"])

  @property
  def num_shards(self) -> int:
    return len(self._manifest["shards"])

  @property
  def nbytes(self) -> int:
    return self.num_rows * self.dim * self.dtype.itemsize

  def labels(self, name: str) -> np.ndarray:
    if name not in self._manifest["labels"]:
      raise DataError(
          f"feature store {self.directory} has no label {name!r}; it has: "
          f"{', '.join(self._manifest['labels']) or 'none'}"
      )
    with np.load(os.path.join(self.directory, LABELS)) as data:
      return data[name]

  def rows_within(self, budget_bytes: int, *, bytes_per_value: int = 4) -> int:
    """Rows of one batch whose float32 copy (``bytes_per_value`` per value) fits ``budget_bytes``."""
    rows = int(budget_bytes) // (self.dim * bytes_per_value)
    if rows < 1:
      raise DataError(
          f"a memory budget of {budget_bytes} bytes holds no row of {self.dim} features; "
          f"raise it to at least {self.dim * bytes_per_value}"
      )
    return rows

  def _open(self, shard: int) -> np.ndarray:
    path = os.path.join(self.directory, self._manifest["shards"][shard]["file"])
    return np.load(path, mmap_mode="r")

  def _by_shard(self, rows: np.ndarray):
    """(shard, positions in ``rows``, local row indices) for each shard that ``rows`` touch."""
    shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
    for s in np.unique(shard_of):
      where = np.flatnonzero(shard_of == s)
      yield int(s), where, rows[where] - self._offsets[s]

  def _check(self, rows) -> np.ndarray:
    rows = np.asarray(rows, np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
      raise DataError(f"row indices outside [0, {self.num_rows}) of {self.directory}")
    return rows

  def rows(self, rows) -> np.ndarray:
    """Features of ``rows`` (global indices, any order) as [len(rows), D] in the store's dtype."""
    rows = self._check(rows)
    out = np.empty((rows.size, self.dim), self.dtype)
    for s, where, local in self._by_shard(rows):
      mm = self._open(s)
      out[where] = mm[local]
      del mm
    return out

  def columns(self, rows, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Features ``start:stop`` of ``rows`` as float32 [len(rows), stop - start] (into ``out``)."""
    rows = self._check(rows)
    if out is None:
      out = np.empty((rows.size, stop - start), np.float32)
    for s, where, local in self._by_shard(rows):
      mm = self._open(s)
      # Advanced indexing with a slice copies only the slice of each selected row.
      out[where] = mm[local, start:stop]
      del mm
    return out

  def batches(
      self, rows, batch_rows: int, *, shuffle_seed: int | None = None
  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions in ``rows``, features in the store's dtype) for consecutive batches of ``rows``.

    With ``shuffle_seed`` the rows are permuted first (each batch is read in ascending order, so
    a shard is opened once per batch); the last batch may be shorter.
    """
    rows = self._check(rows)
    order = np.arange(rows.size)
    if shuffle_seed is not None:
      order = np.random.default_rng(shuffle_seed).permutation(rows.size)
    for s in range(0, rows.size, batch_rows):
      pos = np.sort(order[s : s + batch_rows])
      yield pos, self.rows(rows[pos])


def write_store(
    directory, features, *, dtype: str = "float16", shard_bytes=DEFAULT_SHARD_BYTES, **labels
):
  """Write in-memory ``features`` [N, ...] and ``labels`` as a new store; returns it opened."""
  features = np.asarray(features)
  with ShardWriter(directory, features.shape[1:], dtype=dtype, shard_bytes=shard_bytes) as w:
    w.write(features, **labels)
  return FeatureStore(os.fspath(directory))
