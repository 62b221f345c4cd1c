"""Faults at named points of the code, for the fault tests: kill -9, a hang, an interrupt, a full disk.

A `Fault` names a function or method by its dotted path (`privjax.data.pipeline.pair_batches`,
`zipfile.ZipFile.open`) and says what happens at its Nth call (counting only calls whose arguments
mention `match`, when given), or at the Nth item of the iterator that call returns (`item`):

  kill       SIGKILL of the whole process (what `kill -9` or the out-of-memory killer does)
  block      the calling thread sleeps for an hour (the test kills the process from outside)
  interrupt  KeyboardInterrupt (Ctrl-C: the process unwinds and runs its `finally` blocks)
  enospc     OSError(ENOSPC, 'No space left on device'): the disk filled up at this write
  enospc_tensorstore  the ValueError TensorStore raises for it (its text, as a full tmpfs gave it)

`after=True` acts once the call has returned (its effect on disk is done), else before it runs;
`partial=True` cuts a write off in the middle: for `builtins.open` (and `io.open`, the same
function), the file it opens writes half of its first write, then the fault acts; for
`etils.epath.abstract_path.Path.write_bytes` / `write_text`, half the data is written, then it acts.

In process, `inject(*faults)` is a context manager (the patches are undone on exit). In a child
process, `command(faults, script_or_module, *args)` is the command line that installs the faults and
runs the script (`train.py`) or module (`-m privjax export`) as `__main__`, and `call(faults, fn,
*args)` the one that runs the function `module:name` with JSON arguments:

  python tests/faultlib.py FAULTS_JSON train.py --config ...
  python tests/faultlib.py FAULTS_JSON -m privjax export --workdir ...
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
import io
import json
import os
import runpy
import signal
import sys
import threading
import time

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
ACTIONS = ('kill', 'block', 'interrupt', 'enospc', 'enospc_tensorstore')
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
  # For a write (`Path.write_bytes(path, data)`, `write_text`): write the first half of the data
  # to the path first, as a kill or a full disk in the middle of the write leaves it.
  partial: bool = False

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
  elif action == 'enospc_tensorstore':
    raise ValueError(
        f'RESOURCE_EXHAUSTED: Error writing local file "{where}": Failed to write 4096 bytes to '
        f"file 4: No space left on device [os_error_code='{errno.ENOSPC}']"
    )


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


_REAL_OPEN = open


class _CutFile:
  """A file whose first write stops half way, then the fault acts (a disk that fills up)."""

  def __init__(self, file, fault: Fault):
    self._file, self._fault = file, fault

  def write(self, data):
    self._file.write(data[: len(data) // 2])
    self._file.flush()
    act(self._fault.action, f'{self._fault.target} {self._file.name}')

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._file.close()

  def __getattr__(self, name):
    return getattr(self._file, name)


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

  def hit_now(args):
    if fault.partial:
      path, data = args[0], args[1]
      with _REAL_OPEN(os.fspath(path), 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data[: len(data) // 2])
    act(fault.action, fault.target)

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
        hit_now(args)
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
    if hit and fault.partial and real is _REAL_OPEN:
      return _CutFile(real(*args, **kwargs), fault)
    if hit and not fault.after:
      hit_now(args)
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
      if real is _REAL_OPEN:  # io.open is the same function, under another name
        io.open = wrapped
        undo.append((io, 'open', real, True))
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


def call(faults, fn: str, *args, **kwargs) -> list[str]:
  """The command line that calls `fn` ('package.module:function') with JSON-able arguments."""
  return command(faults, '--call', fn, json.dumps(list(args)), json.dumps(kwargs))


def _main(argv):
  faults = [Fault(**f) for f in json.loads(argv[0])]
  rest = argv[1:]
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  with inject(*faults):
    if rest[0] == '--call':
      module, name = rest[1].split(':')
      kwargs = json.loads(rest[3]) if len(rest) > 3 else {}
      getattr(importlib.import_module(module), name)(*json.loads(rest[2]), **kwargs)
    elif rest[0] == '-m':
      sys.argv = rest[1:]
      runpy.run_module(rest[1], run_name='__main__', alter_sys=True)
    else:
      sys.argv = rest
      sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))
      runpy.run_path(rest[0], run_name='__main__')


if __name__ == '__main__':
  _main(sys.argv[1:])


class Cases(dict):
  """A table of test cases: {name: value} as a dict (what the test is parametrized over), plus its
  category, what every case asserts and a one-line description per case (tools/fault_table.py
  reads them from the source to write benchmarks/results/fault_cases.md).

    TABLE = Cases('category', 'what each case asserts', {'name': ('description', value), ...})
  """

  def __init__(self, category: str, asserts: str, cases: dict):
    super().__init__({name: value for name, (_, value) in cases.items()})
    self.category, self.asserts = category, asserts
    self.about = {name: about for name, (about, _) in cases.items()}
