"""Faults at named points of the code, for the fault tests: kill -9, a hang, an interrupt, a full disk.

A `Fault` names a function or method by its dotted path (`privjax.data.pipeline.pair_batches`,
`zipfile.ZipFile.open`) and says what happens at its Nth call (counting only calls whose arguments
mention `match`, when given), or at the Nth item of the iterator that call returns (`item`):

  kill       SIGKILL of the whole process (what `kill -9` or the out-of-memory killer does)
  block      the calling thread sleeps for an hour (the test kills the process from outside)
  interrupt  KeyboardInterrupt (Ctrl-C: the process unwinds and runs its `finally` blocks)
  enospc     OSError(ENOSPC, 'No space left on device'): the disk filled up at this write

`after=True` acts once the call has returned (its effect on disk is done), else before it runs.

In process, `inject(*faults)` is a context manager (the patches are undone on exit). In a child
process, `command(faults, script_or_module, *args)` is the command line that installs the faults and
runs the script (`train.py`) or module (`-m privjax.export`) as `__main__`, and `call(faults, fn,
*args)` the one that runs the function `module:name` with JSON arguments:

  python tests/faultlib.py FAULTS_JSON train.py --config ...
  python tests/faultlib.py FAULTS_JSON -m privjax.export --workdir ...
  python tests/faultlib.py FAULTS_JSON --call privjax.data.synthetic_faces:build '["tiny", "/d"]'

Python-level only: a write done by C++ (tensorstore's array files) fails at the Python call that
issues it, not at the byte where a real disk fills.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import importlib
import inspect
import json
import os
import runpy
import signal
import sys
import threading
import time

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
ACTIONS = ('kill', 'block', 'interrupt', 'enospc')
# A training's 6th batch (fetched once step 4 is done; the tiny config checkpoints at step 3) of
# its run from step 0: `Fault(action=..., **AT_BATCH_6)`.
AT_BATCH_6 = dict(target='privjax.data.pipeline.pair_batches', item=6, match="'start_step': 0")


@dataclasses.dataclass(frozen=True)
class Fault:
  target: str  # 'package.module.function' or 'package.module.Class.method'
  action: str = 'kill'
  call: int = 1  # the Nth call (1-based) of target, among those that mention `match`
  item: int | None = None  # else the Nth item (1-based) of the iterator that call returns
  match: str | None = None  # count only calls whose arguments' repr contains this
  after: bool = False  # act when the call has returned, not before it runs

  def __post_init__(self):
    if self.action not in ACTIONS:
      raise ValueError(f'unknown action {self.action!r}; one of {ACTIONS}')

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def act(action: str, where: str) -> None:
  if action == 'kill':
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
  elif action == 'block':
    time.sleep(3600)
  elif action == 'interrupt':
    raise KeyboardInterrupt(f'simulated interrupt at {where}')
  elif action == 'enospc':
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def resolve(target: str):
  """(owner, attribute name) of a dotted path: the longest importable module, then attributes."""
  parts = target.split('.')
  for i in range(len(parts) - 1, 0, -1):
    try:
      owner = importlib.import_module('.'.join(parts[:i]))
    except ImportError:
      continue
    for name in parts[i:-1]:
      owner = getattr(owner, name)
    if not hasattr(owner, parts[-1]):
      raise AttributeError(f'{target}: {owner!r} has no {parts[-1]!r}')
    return owner, parts[-1]
  raise ImportError(f'{target}: no module of it can be imported')


def _wrap(fault: Fault, real):
  lock = threading.Lock()
  calls = [0]

  def counts(args, kwargs) -> bool:
    if fault.match is not None:
      try:
        text = repr(args) + repr(kwargs)
      except Exception:  # an argument whose repr fails
        text = ''
      if fault.match not in text:
        return False
    with lock:
      calls[0] += 1
      return calls[0] == fault.call

  def items(iterator):
    for i, value in enumerate(iterator, 1):
      if i == fault.item and not fault.after:
        act(fault.action, f'{fault.target} item {i}')
      yield value
      if i == fault.item and fault.after:
        act(fault.action, f'{fault.target} item {i}')

  if inspect.iscoroutinefunction(real):

    @functools.wraps(real)
    async def async_wrapper(*args, **kwargs):
      hit = counts(args, kwargs)
      if hit and not fault.after:
        act(fault.action, fault.target)
      out = await real(*args, **kwargs)
      if hit and fault.after:
        act(fault.action, fault.target)
      return out

    return async_wrapper

  @functools.wraps(real)
  def wrapper(*args, **kwargs):
    hit = counts(args, kwargs)
    if hit and fault.item is not None:
      return items(real(*args, **kwargs))
    if hit and not fault.after:
      act(fault.action, fault.target)
    out = real(*args, **kwargs)
    if hit and fault.after:
      act(fault.action, fault.target)
    return out

  return wrapper


@contextlib.contextmanager
def inject(*faults: Fault):
  """Installs `faults` for the body of the `with`; undoes them on exit."""
  undo = []
  try:
    for fault in faults:
      owner, name = resolve(fault.target)
      real = inspect.getattr_static(owner, name)
      if isinstance(real, (staticmethod, classmethod)):
        wrapped = type(real)(_wrap(fault, real.__func__))
      else:
        wrapped = _wrap(fault, real)
      own = name in vars(owner)  # else inherited: the patch goes, the base's stays
      setattr(owner, name, wrapped)
      undo.append((owner, name, real, own))
    yield
  finally:
    for owner, name, real, own in reversed(undo):
      if own:
        setattr(owner, name, real)
      else:
        delattr(owner, name)


def command(faults, *argv: str) -> list[str]:
  """The command line that runs `argv` (a script and its arguments, or `-m module ...`) as
  `__main__` in a new Python with `faults` installed."""
  spec = json.dumps([f.to_json() for f in faults])
  return [sys.executable, HERE, spec, *argv]


def call(faults, fn: str, *args) -> list[str]:
  """The command line that calls `fn` ('package.module:function') with JSON-able `args`."""
  return command(faults, '--call', fn, json.dumps(list(args)))


def _main(argv):
  faults = [Fault(**f) for f in json.loads(argv[0])]
  rest = argv[1:]
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  with inject(*faults):
    if rest[0] == '--call':
      module, name = rest[1].split(':')
      getattr(importlib.import_module(module), name)(*json.loads(rest[2]))
    elif rest[0] == '-m':
      sys.argv = rest[1:]
      runpy.run_module(rest[1], run_name='__main__', alter_sys=True)
    else:
      sys.argv = rest
      sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))
      runpy.run_path(rest[0], run_name='__main__')


if __name__ == '__main__':
  _main(sys.argv[1:])
