"""Plug-in defaults read from source: a plug-in module (an evaluator, a defence) declares its
settings as a `Settings` dataclass, and a config builds its section from the defaults found there.

The module is parsed with `ast`, never imported: naming a config loads no jax. Imports nothing of
privjax and no jax.
"""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

_FACTORIES = {'dict': {}, 'list': [], 'tuple': ()}


def _default(node: ast.expr):
  """The value of a `Settings` field's default: a literal, or `dataclasses.field(default=...)` /
  `field(default_factory=dict|list|tuple)`."""
  if isinstance(node, ast.Call) and getattr(node.func, 'attr', getattr(node.func, 'id', '')) == (
      'field'
  ):
    for kw in node.keywords:
      if kw.arg == 'default':
        return ast.literal_eval(kw.value)
      if kw.arg == 'default_factory' and getattr(kw.value, 'id', None) in _FACTORIES:
        return _FACTORIES[kw.value.id]
  return ast.literal_eval(node)


def module_path(package: str, name: str) -> str:
  """The source file of module `name` of `package`, found without importing either."""
  spec = importlib.util.find_spec(package)
  return os.path.join(list(spec.submodule_search_locations)[0], f'{name}.py')


def declared_defaults(path: str) -> dict:
  """{field: default} of the `Settings` class in the source file `path`, in declaration order
  ({} without one). Defaults must be literals (tests check that they are the dataclass's own)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in tree.body:
    if isinstance(node, ast.ClassDef) and node.name == 'Settings':
      return {
          stmt.target.id: _default(stmt.value)
          for stmt in node.body
          if isinstance(stmt, ast.AnnAssign) and stmt.value is not None
      }
  return {}


def _to_config(value):
  if isinstance(value, dict):
    return ml_collections.ConfigDict({k: _to_config(v) for k, v in value.items()})
  return value


def config_sections(package: str, names) -> ml_collections.ConfigDict:
  """One section per plug-in of `package` in `names`, holding its declared defaults."""
  return ml_collections.ConfigDict(
      {name: _to_config(declared_defaults(module_path(package, name))) for name in names}
  )
