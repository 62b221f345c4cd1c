"""Run directories and orbax checkpoints: the only module that talks to orbax.

Layout of a workdir:
  config.json                 the resolved experiment config (written once, when the run starts)
                              and the run's format stamp (`run_stamp`)
  checkpoints/<step>/params   model parameters (a pure dict: {'extractor': ..., 'head': ...})
  checkpoints/<step>/opt_state, checkpoints/<step>/defence (the defence's state, when it has one),
  checkpoints/<step>/meta (step, format stamp; the defence's summary, e.g. its margin),
  checkpoints/<step>/config
  metrics.jsonl, tensorboard/ (written by the loop)
  train.lock                  while a training runs: its host, pid and start time (WorkdirLock)
  broken_checkpoints/<step>   a checkpoint that failed to restore, set aside by a resumed training

A workdir may be a local path or a URI (`gs://bucket/run`): every file here is reached through
`etils.epath` (privjax.paths), and orbax gets the URI as it is (a local path made absolute).

A checkpoint that fails to restore (a truncated or corrupt file) is skipped for the newest one that
restores, with a one-line warning that names it; it is never deleted. Evaluation leaves it where it
is; a resumed training moves it to broken_checkpoints/ (it would save that step again). When no
checkpoint restores, RunError says so in one line.

Every run records which privjax wrote it and the run format (`run_stamp`: in config.json and in
each checkpoint's meta). A run of another format, or one written before runs recorded theirs, is
refused in one line that names the privjax version that wrote it, when it is resumed (config.json)
and when it is loaded for evaluation, export or `init_from` (the checkpoint's meta).

While a training runs in a workdir (its lock held by a live process), reading its checkpoints for
evaluation, export or `init_from` is refused in one line (`check_not_training`), unless the step
asked for is one the training keeps (`kept_steps`: orbax deletes the others as it saves).
A damaged config.json is a one-line RunError that names it.

Evaluation restores `params` and `config` alone. Must not import privjax.models or privjax.data.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import socket
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

import privjax
from privjax import config as config_lib
from privjax import paths
from privjax.errors import RunError

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
BROKEN_DIR = 'broken_checkpoints'
LOCK_FILE = 'train.lock'
_CONFIG_TMP = f'{CONFIG_FILE}.tmp.'  # paths.write_atomic's temporary file of config.json
# What a run directory holds and means; a change that older code would misread bumps it.
RUN_FORMAT = 1
# The only release whose runs carry no stamp.
_UNSTAMPED_VERSION = '0.1.0'


def checkpoint_dir(workdir: str) -> str:
  """`workdir`/checkpoints, absolute when local (orbax needs that), a URI as it is."""
  return os.fspath(paths.absolute(workdir) / CHECKPOINT_DIR)


def run_stamp() -> dict:
  """Which privjax wrote a run, in which run format: added to config.json and checkpoint meta."""
  return {'privjax_version': privjax.__version__, 'run_format': RUN_FORMAT}


def check_run_format(record: dict, workdir: str) -> None:
  """RunError, in one line naming the privjax that wrote it, unless `record` (config.json or a
  checkpoint's meta) carries this privjax's run format."""
  found = record.get('run_format')
  if found == RUN_FORMAT:
    return
  wrote = record.get('privjax_version', _UNSTAMPED_VERSION)
  raise RunError(
      f'{workdir} was written by privjax {wrote} (run format {found or 0}); privjax '
      f'{privjax.__version__} reads run format {RUN_FORMAT} only: train it again in a new workdir'
  )


def read_config(workdir: str) -> dict:
  """The config saved in `workdir` (its format checked, the stamp left out)."""
  path = paths.as_path(workdir) / CONFIG_FILE
  if not path.exists():
    raise RunError(f'{workdir} is not a privjax run: it has no {CONFIG_FILE}')
  try:
    saved = json.loads(path.read_text())
  except ValueError as e:
    saved, error = None, e
  if not isinstance(saved, dict):
    why = f'not JSON: {error}' if saved is None else 'not a JSON object'
    # No rebuild: a resume compares the config given with this one, and nothing else keeps the
    # stamp and the digest as this file does.
    raise RunError(
        f"{path} is damaged ({why}); it records the run's config: restore it from a copy, or "
        'train again in a new --workdir (evaluation and export read the checkpoints and still work)'
    ) from None
  check_run_format(saved, workdir)
  return {k: v for k, v in saved.items() if k not in run_stamp()}


def update_config(workdir: str, key: str, value: Any) -> None:
  """Sets the dotted `key` of a run's config.json (on process 0, atomically): what a resumption
  changed on the user's request (dataset.digest when it continued on new data)."""
  if jax.process_index() != 0:
    return
  # The stamp stays: it says which privjax wrote the run, and this writer keeps its format.
  config_dict = {**read_config(workdir), **run_stamp()}
  *parents, leaf = key.split('.')
  node = config_dict
  for part in parents:
    node = node.setdefault(part, {})
  node[leaf] = value
  try:
    paths.write_atomic(
        paths.join(workdir, CONFIG_FILE), json.dumps(config_dict, indent=2, sort_keys=True)
    )
  except OSError as e:
    raise RunError(f'cannot write --workdir {workdir}: {e.strerror or e}') from None


def check_workdir(workdir: str, config_dict: dict) -> bool:
  """prepare_workdir's refusals, reading only; True when `workdir` holds this run (a resume)."""
  path = paths.as_path(workdir)
  try:
    is_dir = path.is_dir()
    if not is_dir and path.exists():
      raise RunError(f'--workdir {workdir} exists and is not a directory')
    existing = {p.name for p in path.iterdir()} if is_dir else set()
  except OSError as e:
    raise RunError(f'cannot read --workdir {workdir}: {e.strerror or e}') from None
  except ImportError as e:  # epath's backend for the URI's scheme is not installed
    raise RunError(f'cannot reach --workdir {workdir}: {e}') from None
  if CONFIG_FILE in existing:
    diffs = config_lib.incompatible_keys(read_config(workdir), config_dict)
    if diffs:
      shown = '; '.join(f'{k}: {a!r} -> {b!r}' for k, a, b in diffs[:3])
      more = f' (+{len(diffs) - 3} more)' if len(diffs) > 3 else ''
      raise RunError(
          f'{workdir} holds a run with a different config ({shown}{more}); '
          'use a new --workdir or the same config to resume'
      )
    return True
  # A run that was stopped before it wrote its config: its lock, and the config's temporary file
  # when it was killed inside paths.write_atomic (prepare_workdir removes that).
  existing = {n for n in existing if n != LOCK_FILE and not n.startswith(_CONFIG_TMP)}
  if existing:
    raise RunError(
        f'{workdir} is not empty and holds no privjax run ({", ".join(sorted(existing))[:80]}); '
        'use a new or empty --workdir'
    )
  return False


def prepare_workdir(workdir: str, config_dict: dict) -> bool:
  """Claims `workdir` for this config; returns True when it already holds this run (resume).

  A workdir holding another experiment, or files privjax did not write, is refused untouched; one
  that cannot be created or written is a RunError too.
  """
  if check_workdir(workdir, config_dict):
    return True
  if jax.process_index() == 0:
    try:
      paths.as_path(workdir).mkdir(parents=True, exist_ok=True)
      paths.write_atomic(
          paths.join(workdir, CONFIG_FILE),
          json.dumps({**config_dict, **run_stamp()}, indent=2, sort_keys=True),
      )
      for left in paths.as_path(workdir).glob(f'{_CONFIG_TMP}*'):  # a killed run's
        left.unlink(missing_ok=True)
    except OSError as e:
      raise RunError(f'cannot write --workdir {workdir}: {e.strerror or e}') from None
  return False


def claim_workdir(workdir: str, config_dict: dict) -> tuple[bool, WorkdirLock]:
  """(resume?, lock) for a training in `workdir`: prepare_workdir's checks and config.json, under
  the workdir's lock (taken by process 0 only). Refused untouched when another training holds it."""
  resume = check_workdir(workdir, config_dict)  # refusals first: nothing is written
  if jax.process_index() == 0 and not resume:
    try:
      paths.as_path(workdir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise RunError(f'cannot create --workdir {workdir}: {e.strerror or e}') from None
  lock = WorkdirLock.acquire(workdir)
  try:
    return prepare_workdir(workdir, config_dict), lock  # again: another run may have written it
  except BaseException:
    lock.release()
    raise


def _pid_alive(pid: int, since: float | None) -> bool:
  """Whether process `pid` of this host runs and is the one that started before `since`."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # another user's process
  try:  # Linux: a zombie is dead; a process started after the lock was taken reused the pid
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    if fields[0] == 'Z':
      return False
    if since is not None:
      with open('/proc/stat') as f:
        boot = next(float(l.split()[1]) for l in f if l.startswith('btime'))
      started = boot + int(fields[19]) / os.sysconf('SC_CLK_TCK')
      return started <= since + 2.0
  except (OSError, ValueError, IndexError, StopIteration):
    pass
  return True


class WorkdirLock:
  """`train.lock` in a workdir: one training at a time.

  Created atomically (O_CREAT | O_EXCL; on an object store best effort, see
  `paths.create_new`) and holding {'host', 'pid', 'started'}. A second training
  is refused with a RunError that names the owner. A lock whose process no longer runs on this host
  (a run killed with kill -9) is stale and taken over, so the rerun resumes; a lock of another host
  cannot be checked and is refused (the message says to delete it if that process is gone). In a
  multi-host job only process 0 takes it. `release` removes it if it is still this process's.
  """

  def __init__(self, path: str | None, owner: dict | None = None):
    self.path, self.owner = path, owner

  @staticmethod
  def describe(owner: dict) -> str:
    return f'pid {owner.get("pid")} on {owner.get("host")}, started {owner.get("started")}'

  @staticmethod
  def read(path: str) -> dict | None:
    """The lock's owner; None when the file is gone; {} when it cannot be parsed."""
    try:
      owner = json.loads(paths.as_path(path).read_text())
      return owner if isinstance(owner, dict) else {}
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}

  @staticmethod
  def is_stale(owner: dict) -> bool:
    if not owner:
      return True  # unreadable: its writer died between creating and writing it
    if owner.get('host') != socket.gethostname():
      return False
    pid = owner.get('pid')
    if not isinstance(pid, int) or pid == os.getpid():
      return True  # a pid of this host that is ours now was the killed run's
    return not _pid_alive(pid, owner.get('time'))

  @classmethod
  def acquire(cls, workdir: str) -> WorkdirLock:
    if jax.process_index() != 0:
      return cls(None)
    path = paths.join(workdir, LOCK_FILE)
    now = time.time()
    owner = {
        'host': socket.gethostname(),
        'pid': os.getpid(),
        'started': datetime.datetime.fromtimestamp(now).isoformat(timespec='seconds'),
        'time': now,
    }
    for _ in range(20):
      try:
        paths.create_new(path, json.dumps(owner))
      except FileExistsError:
        held = cls.read(path)
        if held == {} and time.time() - _mtime(path) < 2.0:
          time.sleep(0.1)  # being written right now
          continue
        if held is None:
          continue
        if not cls.is_stale(held):
          other_host = held.get('host') != socket.gethostname()
          raise RunError(
              f'{workdir} is in use by another training ({cls.describe(held)}; lock {path}); '
              + (
                  'delete the lock if that process no longer runs'
                  if other_host
                  else 'wait for it to finish or stop it'
              )
          ) from None
        cls._remove_stale(path, held)
        continue
      except OSError as e:
        raise RunError(f'cannot write --workdir {workdir}: {e.strerror or e}') from None
      return cls(path, owner)
    raise RunError(f'cannot take the lock {path}: other processes keep changing it')

  @classmethod
  def _remove_stale(cls, path: str, held: dict) -> None:
    """Removes the stale lock `held`, not one another process took in between (on an object
    store: unless it took it between the read and the removal)."""
    if not paths.is_local(path):
      if cls.read(path) == held:
        paths.as_path(path).unlink(missing_ok=True)
        logging.warning('took over the stale lock of a stopped training (%s)', cls.describe(held))
      return
    aside = f'{path}.stale.{os.getpid()}'
    try:
      os.rename(path, aside)
    except FileNotFoundError:
      return  # another process removed it first
    if cls.read(aside) != held:  # another process's fresh lock: put it back
      try:
        os.link(aside, path)
      except FileExistsError:
        pass
    else:
      logging.warning('took over the stale lock of a stopped training (%s)', cls.describe(held))
    os.remove(aside)

  def release(self) -> None:
    if self.path and self.read(self.path) == self.owner:
      paths.as_path(self.path).unlink(missing_ok=True)
    self.path = None


def _mtime(path: str) -> float:
  return paths.mtime(path)


class Checkpoints:
  """Saves every `every` steps (and when forced), keeps the last `keep`; async saves."""

  def __init__(self, workdir: str, *, every: int = 1, keep: int | None = None, read_only=False):
    self.directory = checkpoint_dir(workdir)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=0 if read_only else every,  # orbax warns about any other value
        max_to_keep=keep,
        create=not read_only,
        read_only=read_only,
    )
    if not read_only:
      _quiet_closed_event_loops()
    try:
      self.manager = ocp.CheckpointManager(self.directory, options=options)
    except ImportError as e:  # orbax lists gs:// steps through the GCS client library
      hint = ' (orbax needs google-cloud-storage for gs://)' if 'google' in str(e) else ''
      raise RunError(f'cannot open the checkpoints {self.directory}: {e}{hint}') from None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(
      self, step: int, state: dict, config_dict: dict, *, force: bool = False, meta_fn=None
  ) -> bool:
    """Saves when the interval (or `force`) says so; `meta_fn()` adds to the metadata then only."""
    if not force and not self.manager.should_save(step):
      return False
    meta = {'step': int(step), **run_stamp(), **(meta_fn() if meta_fn else {})}
    items = {
        'params': ocp.args.StandardSave(state['params']),
        'opt_state': ocp.args.StandardSave(state['opt_state']),
        'meta': ocp.args.JsonSave(meta),
        'config': ocp.args.JsonSave(config_dict),
    }
    if jax.tree_util.tree_leaves(state.get('defence')):
      items['defence'] = ocp.args.StandardSave(state['defence'])
    with self._saving(step):  # a previous async save's failure surfaces here too
      saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
    if saved:
      self._pending = int(step)
    return saved

  @contextlib.contextmanager
  def _saving(self, step: int | None):
    """A save that fails for the disk (full, read-only, quota) as a one-line RunError; the
    checkpoints saved before it are complete (orbax writes into a temporary folder and renames it
    when done), so a rerun resumes from the latest of them."""
    try:
      yield
    except Exception as e:
      reason = disk_error(e)
      if reason is None:
        raise
      pending = step if step is not None else getattr(self, '_pending', None)
      which = f'checkpoint step {pending}' if pending is not None else 'a checkpoint'
      # Which steps end up complete is orbax's to finish in the background (a step whose own
      # metadata failed can still be committed): the rerun finds out, skipping broken ones.
      after = '; a rerun resumes from the latest checkpoint that restores'
      raise RunError(f'cannot save {which} in {self.directory}: {reason}{after}') from None

  def restore_state(self, step: int, abstract_state: dict) -> tuple[dict, dict]:
    """(state, meta) in the shapes, dtypes and shardings of `abstract_state`."""
    items = {
        'params': ocp.args.StandardRestore(abstract_state['params']),
        'opt_state': ocp.args.StandardRestore(abstract_state['opt_state']),
        'meta': ocp.args.JsonRestore(),
    }
    defence_state = abstract_state.get('defence')
    if jax.tree_util.tree_leaves(defence_state):
      items['defence'] = ocp.args.StandardRestore(defence_state)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    if 'defence' in items:
      defence_state = restored.defence
    state = {
        'params': restored.params,
        'opt_state': restored.opt_state,
        'step': np.int32(restored.meta['step']),
        'defence': defence_state,
    }
    return state, dict(restored.meta)

  def restore_latest_state(self, abstract_state: dict) -> tuple[int, dict, dict, list[int]]:
    """(step, state, meta, broken steps) of the newest checkpoint that restores (restore_state).

    Newer checkpoints that fail (a truncated or corrupt file) are named in a one-line warning and
    returned, not deleted; `set_aside` moves them out of the way of the resumed run. RunError when
    none restores. In a multi-host job every process restores process 0's step.
    """
    step, (state, meta), broken = self._newest_restorable(
        self.all_steps(), lambda s: self.restore_state(s, abstract_state), 'resuming from'
    )
    if jax.process_count() > 1:
      first = int(multihost_utils.broadcast_one_to_all(np.int32(step)))
      if first != step:
        step, (state, meta) = first, self._restore_or_fail(
            first, lambda s: self.restore_state(s, abstract_state)
        )
        broken = [s for s in self.all_steps() if s > first]
    return step, state, meta, broken

  def set_aside(self, steps) -> list[str]:
    """Moves the checkpoints of `steps` to <workdir>/broken_checkpoints/ (process 0; the others
    wait), so that a resumed run can save those steps again; returns where they went."""
    broken_dir = paths.as_path(self.directory).parent / BROKEN_DIR
    moved = []
    if jax.process_index() == 0:
      broken_dir.mkdir(parents=True, exist_ok=True)
      for step in steps:
        target, n = broken_dir / str(step), 1
        while target.exists():
          target, n = broken_dir / f'{step}-{n}', n + 1
        (paths.as_path(self.directory) / str(step)).rename(target)
        moved.append(os.fspath(target))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('privjax set aside broken checkpoints')
    self.manager.reload()
    return moved

  def _restore_or_fail(self, step: int, restore: Callable[[int], Any]):
    try:
      return restore(step)
    except Exception as e:  # orbax and tensorstore raise plain Exceptions on a corrupt file
      raise RunError(
          f'checkpoint {paths.join(self.directory, str(step))} cannot be restored: '
          f'{_first_line(e)}'
      ) from None

  def _newest_restorable(self, steps, restore: Callable[[int], Any], action: str):
    """(step, restore(step), newer steps that failed) for the newest of `steps` that restores;
    a one-line warning names the ones that failed, RunError (one line) when none restores."""
    broken = []
    for step in sorted(steps, reverse=True):
      try:
        result = restore(step)
      except Exception as e:  # orbax and tensorstore raise plain Exceptions on a corrupt file
        broken.append((step, _first_line(e)))
        continue
      if broken:
        logging.warning(
            'checkpoint %s cannot be restored (%s); %s step %d, the intact one before it',
            ', '.join(paths.join(self.directory, str(s)) for s, _ in broken),
            broken[0][1],
            action,
            step,
        )
      return step, result, [s for s, _ in broken]
    shown = '; '.join(f'step {s}: {m}' for s, m in broken)
    shown = shown if len(shown) <= 400 else shown[:397] + '...'
    raise RunError(f'no checkpoint of {os.path.dirname(self.directory)} can be restored ({shown})')

  def restore_params(self, step: int | None = None) -> tuple[int, Any, dict, dict]:
    """(step, params as numpy pure dict, meta, config) without the optimizer state.

    `step=None`: the newest checkpoint that restores (a broken newer one is skipped with a
    warning and left in place); a given step that does not restore is a RunError.
    """
    steps = self.all_steps()
    if not steps:
      raise RunError(f'{os.path.dirname(self.directory)} has no checkpoint')
    if step is None:
      return self._newest_restorable(steps, self._restore_params_at, 'using')[1]
    if step not in steps:
      raise RunError(
          f'step {step} has no checkpoint in {os.path.dirname(self.directory)}; '
          f'available: {", ".join(map(str, sorted(steps)))}'
      )
    return self._restore_or_fail(step, self._restore_params_at)

  def _restore_params_at(self, step: int) -> tuple[int, Any, dict, dict]:
    # Onto one local device: a run saved on another number of devices (or hosts) restores anywhere.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saved = ocp.StandardCheckpointHandler().metadata(
        epath.Path(self.directory) / str(step) / 'params'
    )
    abstract = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved
    )
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract),
            meta=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        ),
    )
    params = jax.tree_util.tree_map(np.asarray, restored.params)
    return step, params, dict(restored.meta), dict(restored.config)

  def wait(self):
    with self._saving(None):
      self.manager.wait_until_finished()

  def close(self):
    """Waits for the last save and closes; a second call does nothing."""
    if getattr(self, '_closed', False):
      return
    self._closed = True
    try:
      with self._saving(None):
        self.manager.wait_until_finished()
    finally:
      try:
        self.manager.close()
      except Exception as e:  # the failed save again: reported above
        if disk_error(e) is None:
          raise


def disk_error(e: BaseException) -> str | None:
  """What the disk said, when `e` (or what it was raised from) is a failed write of the operating
  system: an OSError with an errno, or TensorStore's error that carries one; None for anything
  else (a bug keeps its traceback)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno is not None:
      where = f': {e.filename}' if e.filename else ''
      return f'{e.strerror or os.strerror(e.errno)}{where}'
    code = re.search(r"\[os_error_code='?(\d+)'?\]", str(e))
    if code:
      return os.strerror(int(code.group(1)))
    e = e.__cause__ or e.__context__
  return None


def _quiet_closed_event_loops() -> None:
  """When a save fails (a full disk), TensorStore's callbacks for the writes still in flight find
  orbax's event loop closed: `RuntimeError: Event loop is closed` as unraisable exceptions, dozens
  of tracebacks of the failure that Checkpoints reports in one line (seen on a real full tmpfs).
  Installed by a writing Checkpoints, this hook drops those (and 'cannot schedule new futures');
  any other unraisable exception goes to the hook there was."""
  previous = sys.unraisablehook
  if getattr(previous, 'privjax_quiet', False):
    return

  def hook(unraisable):
    text = str(unraisable.exc_value)
    if isinstance(unraisable.exc_value, RuntimeError) and (
        'Event loop is closed' in text or 'cannot schedule new futures' in text
    ):
      return
    previous(unraisable)

  hook.privjax_quiet = True
  sys.unraisablehook = hook


class _DiskErrorLogs(logging.Filter):
  """Drops orbax's logged tracebacks of a save that failed for the disk: Checkpoints raises the
  failure as one RunError line, which is what the user sees."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR or 'orbax' not in record.pathname:
      return True
    error = record.exc_info[1] if record.exc_info else None
    return error is None or disk_error(error) is None


logging.getLogger('absl').addFilter(_DiskErrorLogs())


def _first_line(e: BaseException, limit: int = 160) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  first = (lines[0] if lines else '').split(' See full TensorStore details')[0]
  text = f'{type(e).__name__}: {first}'
  return text if len(text) <= limit else text[: limit - 3] + '...'


def latest_step(workdir: str) -> int | None:
  """The newest checkpoint step of `workdir` (committed: orbax's temporary folders are not steps);
  None when it has none."""
  directory = paths.as_path(checkpoint_dir(workdir))
  try:
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
  except (FileNotFoundError, NotADirectoryError):
    return None
  return max(steps, default=None)


def kept_steps(config_dict: dict) -> list[int] | None:
  """The checkpoint steps a training of `config_dict` keeps when it is over (None: every one it
  saves): the last `keep_checkpoints` of the steps it saves (orbax's first step, each multiple of
  `checkpoint_every`, the final step)."""
  keep = config_dict.get('keep_checkpoints')
  if not keep:
    return None
  total, every = int(config_dict['total_steps']), int(config_dict['checkpoint_every'])
  saved = sorted({1, *range(every, total + 1, every), total})
  return saved[-keep:]


def check_not_training(workdir: str, step: int | None) -> None:
  """RunError (one line) for reading the checkpoints of a run whose training is in progress (its
  lock held by a live process), unless `step` names a checkpoint that training keeps: the latest
  checkpoint changes as it trains, and orbax deletes the ones it does not keep."""
  lock = paths.join(workdir, LOCK_FILE)
  try:
    owner = WorkdirLock.read(lock)
  except ImportError:  # epath's backend for the URI's scheme: restore_run says so
    return
  if owner is None or WorkdirLock.is_stale(owner):
    return
  kept = kept_steps(read_config(workdir))
  if step is not None and (kept is None or step in kept):
    return
  which = 'any step it saves' if kept is None else f'step {", ".join(map(str, kept))}'
  if step is None:
    reason = 'its latest checkpoint changes as it trains'
  else:
    reason = f'it will delete checkpoint step {step}'
  raise RunError(
      f'{workdir} is being trained now ({WorkdirLock.describe(owner)}; lock {lock}): {reason}; '
      f'wait for it to finish, or name a checkpoint it keeps with --step ({which})'
  )


def restore_run(workdir: str, step: int | None = None) -> tuple[int, Any, dict, dict]:
  """(step, params, meta, config) of another run, for `init_from` and evaluation; refused while
  a training runs in it unless `step` is one it keeps (`check_not_training`)."""
  try:
    is_dir = paths.as_path(workdir).is_dir()
  except ImportError as e:  # epath's backend for the URI's scheme is not installed
    raise RunError(f'cannot reach run directory {workdir}: {e}') from None
  if not is_dir:
    raise RunError(f'run directory {workdir} does not exist')
  if not paths.as_path(checkpoint_dir(workdir)).is_dir():
    raise RunError(f'{workdir} has no checkpoint (no {CHECKPOINT_DIR}/ folder)')
  check_not_training(workdir, step)
  ckpt = Checkpoints(workdir, read_only=True)
  try:
    restored = ckpt.restore_params(step)
  finally:
    ckpt.close()
  check_run_format(restored[2], workdir)
  return restored
