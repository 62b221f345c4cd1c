r"""Config files: their `arg` strings, how one extends another, and where they are found. No jax.

A config file is a Python file with `get_config(arg: str = '')`; `--config FILE:ARG` passes what
follows the colon. ARG is comma-separated: bare words (`siamese`, `tiny`) and KEY=VALUE options
(`csv=PATH`). Every config file reads it with `parse`, extends another with `parent`, and every
command loads config files with `config_module` / `load` or a flag of `DEFINE_config_file`.

Where a config file is found (`resolve`): a path that exists is used as it is; a relative path
`configs/...` that does not exist names the same file among the configs installed with the package
(`privjax.configs`, the repository's configs/ directory). So `--config configs/default.py:tiny`
means the same file in a clone (from its root) and after `pip install privjax` anywhere.

Must not import jax, flax, optax or any other privjax module: the configs import it to be named.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

from absl import flags
from ml_collections import config_flags

# Flags that `DEFINE_config_file` defines belong to its caller (in --help and elsewhere).
flags.disclaim_key_flags()

PACKAGE = 'privjax.configs'
PREFIX = 'configs'  # the repository's folder, installed as PACKAGE


@dataclasses.dataclass(frozen=True)
class Args:
  """A config file's parsed `arg`: bare words in order and KEY=VALUE options."""

  words: tuple[str, ...] = ()
  options: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __contains__(self, word: str) -> bool:
    return word in self.words

  def get(self, key: str, default: str | None = None) -> str | None:
    return self.options.get(key, default)

  def text(self, *, words: bool = True, options: bool = True) -> str:
    """The arguments as an `arg` string again (for the config file this one extends)."""
    parts = list(self.words) if words else []
    if options:
      parts += [f'{k}={v}' for k, v in self.options.items()]
    return ','.join(parts)


def parse(
    arg: str | None,
    *,
    words: Collection[str] | Callable[[str], bool] | None = (),
    options: Collection[str] | None = (),
    valid: str = '',
) -> Args:
  """'calibrated,tiny,csv=a.csv' → Args(('calibrated', 'tiny'), {'csv': 'a.csv'}), checked.

  `words`: the bare words the config takes (a collection or a predicate), or None for any (they are
  passed on to the config it extends, which checks them). `options`: the KEYs of KEY=VALUE it
  takes, or None for any. Anything else, or a KEY given twice, raises ValueError that says what is
  valid (`valid`, or the words and options listed).
  """
  found_words, found_options = [], {}
  for item in (a.strip() for a in (arg or '').split(',')):
    if not item:
      continue
    if '=' in item:
      key, value = item.split('=', 1)
      if key in found_options:
        raise ValueError(f'config argument {key}= is given twice in {arg!r}')
      found_options[key] = value
    else:
      found_words.append(item)
  unknown = []
  if options is not None:
    unknown += sorted(k for k in found_options if k not in options)
  if words is not None:
    known = words if callable(words) else (lambda w: w in words)
    unknown += [w for w in found_words if not known(w)]
  if unknown:
    if not valid:
      listed = [f'{k}=...' for k in options or ()] + sorted(() if callable(words) else words or ())
      valid = ', '.join(listed) or 'no arguments'
    raise ValueError(f'unknown config argument(s) {unknown}; valid: {valid}')
  return Args(tuple(found_words), found_options)


def join(*args: str) -> str:
  """Several `arg` strings as one: join('tiny', '', 'csv=a') == 'tiny,csv=a'."""
  return ','.join(a for a in args if a)


def packaged_dir() -> str:
  """The folder of the configs installed with the package (the clone's configs/ when not installed:
  an editable install from before configs were packaged maps only `privjax`)."""
  try:
    spec = importlib.util.find_spec(PACKAGE)
  except ModuleNotFoundError:
    spec = None
  if spec is not None and spec.submodule_search_locations:
    return list(spec.submodule_search_locations)[0]
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PREFIX)


def resolve(path: str) -> str:
  """The config file that `path` names: itself if it exists, else the packaged file of a relative
  `configs/...` path. FileNotFoundError if neither exists."""
  if os.path.isfile(path):
    return path
  parts = os.path.normpath(path).split(os.sep)
  if not os.path.isabs(path) and len(parts) > 1 and parts[0] == PREFIX:
    packaged = os.path.join(packaged_dir(), *parts[1:])
    if os.path.isfile(packaged):
      return packaged
    raise FileNotFoundError(
        f'config file {path} does not exist, here or among the installed configs '
        f'({packaged_dir()})'
    )
  raise FileNotFoundError(f'config file {path} does not exist')


def config_module(path: str):
  """The config file at `path` (see `resolve`) as a module: config files are loaded by path, not
  imported, so they need no package of their own."""
  path = resolve(path)
  name = 'privjax_config_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def parent(file: str, relative: str):
  """How a config file extends another: `parent(__file__, 'default.py')` is the module of the
  config file at `relative` to the calling file's folder (in a clone and installed alike)."""
  return config_module(os.path.join(os.path.dirname(os.path.abspath(file)), relative))


def apply_overrides(config, overrides: Mapping[str, Any]):
  """Sets {'a.b': value} (what `--config.a.b=value` gives) in `config`; returns it."""
  for key, value in (overrides or {}).items():
    *parents, leaf = key.split('.')
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def load(spec: str, *more_args: str, overrides: Mapping[str, Any] | None = None):
  """'FILE[:ARG]' → FILE's config for ARG with `more_args` appended, then `overrides` applied."""
  path, _, arg = spec.partition(':')
  return apply_overrides(config_module(path).get_config(join(arg, *more_args)), overrides)


class _PackagedConfigParser(flags.ArgumentParser):
  """ml_collections' config-file parser, given the file that `resolve` finds."""

  def __init__(self, inner):
    self._inner = inner

  def parse(self, argument):
    if isinstance(argument, str):
      path, colon, arg = argument.partition(':')
      try:
        argument = resolve(path) + colon + arg
      except FileNotFoundError as e:
        raise ValueError(str(e)) from None  # absl reports it as a bad flag value, in one line
    return self._inner.parse(argument)

  def flag_type(self):
    return self._inner.flag_type()


def find_packaged_configs(*names: str, flag_values: flags.FlagValues | None = None) -> None:
  """Makes the config flags `names` (default: every one defined) find packaged configs (see
  `resolve`), for flags defined with ml_collections' own `DEFINE_config_file` (this module's
  `DEFINE_config_file` does it itself). Call it before the command line is parsed; a default that
  ml_collections parsed when the flag was defined is not parsed again."""
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  for name in names or list(flag_values):
    flag = flag_values[name]
    if flag.flag_type() == 'config object' and not isinstance(flag.parser, _PackagedConfigParser):
      flag.parser = _PackagedConfigParser(flag.parser)


def DEFINE_config_file(
    name: str,
    default: str | None = None,
    help_string: str = 'Config file[:args].',
    *,
    lock_config: bool = True,
    flag_values: flags.FlagValues | None = None,
) -> flags.FlagHolder:
  """ml_collections' `DEFINE_config_file` (with its --NAME.key=value overrides) whose files are
  found by `resolve`: `configs/...` names the packaged configs outside a clone."""
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  holder = config_flags.DEFINE_config_file(
      name, None, help_string, flag_values=flag_values, lock_config=lock_config
  )
  find_packaged_configs(name, flag_values=flag_values)
  if default is not None:
    flag_values.set_default(name, default)
  return holder
