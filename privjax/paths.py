"""Directories that may be local or remote: every workdir, run, data and export directory.

A path is a local path or a URI that `etils.epath` understands (`gs://bucket/run`, `s3://...`: TF's
gfile when TensorFlow is installed, else fsspec with gcsfs/s3fs). Everything privjax reads or
writes under such a directory goes through here or through `epath.Path`, never through
`os.path.abspath`/`normpath` (they turn `gs://b/r` into `<cwd>/gs:/b/r`) or `open`.

What lives here: `as_path`, `is_local`, `absolute` (a local path made absolute, as orbax needs; a
URI as it is), `join`, and the writes whose guarantees differ between a local disk and an object
store: `write_atomic` (a temporary file renamed over the target locally; one object write on an
object store, which publishes the object whole), `create_new` (O_EXCL locally; check, write and
read back elsewhere: best effort, see there) and `mtime`.

Must import nothing but the standard library and etils (no jax): evaluation, export and the
command-line jobs use it too.
"""

from __future__ import annotations

import os
import threading

from etils import epath

PathLike = str | os.PathLike


def is_local(path: PathLike) -> bool:
  """True for a path of this machine's file system; False for a URI (`scheme://...`)."""
  return '://' not in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
  """`path` as an `epath.Path` (local paths stay relative; URIs keep their scheme)."""
  return epath.Path(path)


def absolute(path: PathLike) -> epath.Path:
  """A local path made absolute (orbax refuses relative ones); a URI unchanged."""
  return epath.Path(os.path.abspath(path) if is_local(path) else path)


def join(path: PathLike, *parts: str) -> str:
  """`os.path.join` that keeps a URI's `//` (what run directories are named with)."""
  return os.fspath(epath.Path(path).joinpath(*parts))


def write_atomic(path: PathLike, data: str | bytes) -> None:
  """Writes `data` to `path` so that a reader sees the old file or the new one, never a part.

  Locally a temporary file beside it is renamed over it; an OSError of the write (a full disk)
  names `path`. An object store (GCS, S3) publishes an
  object only when its upload completes, so there the object is written directly.
  """
  target = epath.Path(path)
  mode = 'wb' if isinstance(data, bytes) else 'w'
  if not is_local(path):
    with target.open(mode) as f:
      f.write(data)
    return
  tmp = f'{os.fspath(path)}.tmp.{os.getpid()}.{threading.get_ident()}'  # per process and thread
  try:
    with open(tmp, mode) as f:
      f.write(data)
  except BaseException as e:  # a full disk: no part left behind beside the file
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and e.errno is not None and not e.filename:
      # A failed write names no file (a full disk): the error says which one it was.
      raise type(e)(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path)) from e
    raise
  os.replace(tmp, os.fspath(path))


def create_new(path: PathLike, text: str) -> None:
  """Creates file `path` holding `text`; FileExistsError when it exists.

  Locally this is atomic (O_CREAT | O_EXCL). epath has no create-if-absent for object stores: there
  the file is written when absent and read back, and FileExistsError is raised when another
  writer's content is found instead. Two writers that both find it absent before either writes can
  both succeed; a lock built on this is best effort on an object store.
  """
  if is_local(path):
    fd = os.open(os.fspath(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    return
  target = epath.Path(path)
  if target.exists():
    raise FileExistsError(f'{path} exists')
  target.write_text(text)
  if target.read_text() != text:
    raise FileExistsError(f'{path} was written by another process')


def mtime(path: PathLike) -> float:
  """Seconds since the epoch of the last change of `path` (0 when it cannot be read)."""
  try:
    if is_local(path):
      return os.path.getmtime(path)
    return float(epath.Path(path).stat().mtime)
  except (OSError, ValueError):
    return 0.0
