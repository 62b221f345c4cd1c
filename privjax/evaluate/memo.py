"""On-disk memo of attack results, keyed by what the attack sees and by everything that computes it.

An attack's result is a deterministic function of its inputs (features, labels), its settings
(families, overrides, seed, the shape of the re-trained head), the code that computes it and the
numerical libraries under that code. Several evaluations attack identical inputs: the raw-pixel
reference is the same for every run on one data set, and a reference run's noiseless features are
the same as its own evaluation's. The memo stores each result as a small JSON file named by a
SHA-256 of all of that, so the second evaluation reads the result instead of training the attackers
again; a memo hit is marked in the report (`memo`).

The key covers the source of every part of privjax that can change a result (`SOURCES`: the
attackers, the metrics, the feature transforms the attackers use, the model code that builds the
transfer attacker's head, the evaluator modules (privjax/evaluate/evaluators/, every one: they
choose what is attacked and with which settings), and the protocol and memo modules that assemble
the record) and the installed versions of the libraries that compute it (`PACKAGES`).
Not the whole repository: a change to, say, the data pipeline or the training loop changes the
input arrays if it matters, and otherwise should not throw away results that are still valid.
The cache is shared by every checkout, so a key that missed a source would silently read back a
result an older version of the code computed.

Location: `$PRIVJAX_CACHE_DIR/attacks`, default `$XDG_CACHE_HOME/privjax` (`~/.cache/privjax`);
`PRIVJAX_CACHE_DIR=off` (or the eval config's `attack_memo = False`) turns it off. The memo is a
cache of this machine (local files, `os`/`open`, written atomically by a rename), not a run
directory: it never goes through privjax.paths, and a `gs://` workdir does not move it. A worker
without it recomputes the attacks, with the same results. A folder that cannot be written is a
one-line ConfigError that names the variable.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import threading

import numpy as np

from privjax.errors import ConfigError

# Paths relative to the privjax package, folders (every .py below them) or files; absent ones are
# skipped.
SOURCES = (
    'attacks',
    'metrics',
    'privacy',
    'models',
    'evaluate/evaluators',
    'evaluate/protocol.py',
    'evaluate/shared.py',
    'evaluate/memo.py',
)
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'scipy')
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_root() -> str | None:
  root = os.environ.get('PRIVJAX_CACHE_DIR')
  if root == 'off':
    return None
  if not root:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    root = os.path.join(base, 'privjax')
  return root


def source_files(root: str, sources=SOURCES) -> list[str]:
  """The `.py` files under `root` named by `sources`, as sorted paths relative to `root`."""
  out = set()
  for src in sources:
    path = os.path.join(root, src)
    if os.path.isfile(path):
      out.add(src)
    for folder, dirs, files in os.walk(path):
      dirs[:] = [d for d in dirs if d != '__pycache__']
      for name in files:
        if name.endswith('.py'):
          out.add(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, '/'))
  return sorted(out)


@functools.lru_cache(maxsize=8)
def code_digest(root: str, sources: tuple[str, ...]) -> str:
  """SHA-256 over the names and bytes of `source_files(root, sources)`."""
  h = hashlib.sha256()
  for rel in source_files(root, sources):
    with open(os.path.join(root, rel), 'rb') as f:
      h.update(rel.encode() + b'\0' + f.read() + b'\0')
  return h.hexdigest()


@functools.lru_cache(maxsize=8)
def package_versions(packages: tuple[str, ...]) -> dict[str, str | None]:
  """Installed version of each package (None: not installed)."""
  out = {}
  for name in packages:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def key(arrays: dict, settings: dict) -> str:
  """SHA-256 over the arrays (dtype, shape, bytes), the JSON of `settings`, the code and versions."""
  h = hashlib.sha256(code_digest(PACKAGE_ROOT, tuple(SOURCES)).encode())
  h.update(json.dumps(package_versions(tuple(PACKAGES)), sort_keys=True).encode())
  h.update(json.dumps(settings, sort_keys=True, default=str).encode())
  for name in sorted(arrays):
    a = np.ascontiguousarray(arrays[name])
    h.update(f'{name}:{a.dtype.str}:{a.shape}'.encode())
    h.update(memoryview(a).cast('B'))
  return h.hexdigest()


def _path(digest: str) -> str | None:
  root = cache_root()
  return None if root is None else os.path.join(root, 'attacks', digest[:2], digest + '.json')


def load(digest: str) -> dict | None:
  path = _path(digest)
  if path is None or not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):  # a torn or foreign file is a miss, and is rewritten
    return None


def save(digest: str, result: dict) -> None:
  path = _path(digest)
  if path is None:
    return
  tmp = f'{path}.{os.getpid()}.{threading.get_ident()}.tmp'  # evaluations may run in threads
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, 'w') as f:
      json.dump(result, f)
    os.replace(tmp, path)
  except OSError as e:
    variable = 'PRIVJAX_CACHE_DIR' if os.environ.get('PRIVJAX_CACHE_DIR') else 'XDG_CACHE_HOME'
    where = f': {e.filename}' if e.filename else ''
    raise ConfigError(
        f'cannot write the attack memo in {cache_root()} ({variable}): '
        f'{e.strerror or e}{where}; set PRIVJAX_CACHE_DIR to a writable directory, or to off'
    ) from None
