"""On-disk memo of attack results, keyed by what the attack sees.

An attack's result is a deterministic function of its inputs (features, labels), its settings
(families, overrides, seed, the shape of the re-trained head) and the attacker code. Several
evaluations attack identical inputs: the raw-pixel reference is the same for every run on one data
set, and a reference run's noiseless features are the same as its own evaluation's. The memo stores
each result as a small JSON file named by a SHA-256 of all of that, so the second evaluation reads
the result instead of training the attackers again. Any change to the inputs, the settings or a
source file of `privjax.attacks` gives a new key; a memo hit is marked in the report (`memo`).

Location: `$PRIVJAX_CACHE_DIR/attacks`, default `$XDG_CACHE_HOME/privjax` (`~/.cache/privjax`);
`PRIVJAX_CACHE_DIR=off` (or the eval config's `attack_memo = False`) turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os

import numpy as np


def cache_root() -> str | None:
  root = os.environ.get('PRIVJAX_CACHE_DIR')
  if root == 'off':
    return None
  if not root:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    root = os.path.join(base, 'privjax')
  return root


@functools.lru_cache(maxsize=1)
def _attack_code_digest() -> str:
  from privjax import attacks

  h = hashlib.sha256()
  folder = os.path.dirname(attacks.__file__)
  for name in sorted(os.listdir(folder)):
    if name.endswith('.py'):
      with open(os.path.join(folder, name), 'rb') as f:
        h.update(name.encode() + b'\0' + f.read())
  return h.hexdigest()


def key(arrays: dict, settings: dict) -> str:
  """SHA-256 over the arrays (dtype, shape, bytes), the JSON of `settings` and the attacker code."""
  h = hashlib.sha256(_attack_code_digest().encode())
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
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'w') as f:
    json.dump(result, f)
  os.replace(tmp, path)
