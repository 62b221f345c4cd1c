"""Run directories and orbax checkpoints: the only module that talks to orbax.

Layout of a workdir:
  config.json                 the resolved experiment config (written once, when the run starts)
  checkpoints/<step>/params   model parameters (a pure dict: {'extractor': ..., 'head': ...})
  checkpoints/<step>/opt_state, checkpoints/<step>/defence (the defence's state, when it has one),
  checkpoints/<step>/meta (step; the defence's summary, e.g. its margin), checkpoints/<step>/config
  metrics.jsonl, tensorboard/ (written by the loop)

Evaluation restores `params` and `config` alone. Must not import privjax.models or privjax.data.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from privjax import config as config_lib
from privjax.errors import RunError

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
_OURS = {CONFIG_FILE, CHECKPOINT_DIR, 'metrics.jsonl', 'tensorboard', 'eval', 'final_metrics.json'}


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def read_config(workdir: str) -> dict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise RunError(f'{workdir} is not a privjax run: it has no {CONFIG_FILE}')
  with open(path) as f:
    return json.load(f)


def prepare_workdir(workdir: str, config_dict: dict) -> bool:
  """Claims `workdir` for this config; returns True when it already holds this run (resume).

  A workdir holding another experiment, or files privjax did not write, is refused untouched.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise RunError(f'--workdir {workdir} exists and is not a directory')
  existing = set(os.listdir(workdir)) if os.path.isdir(workdir) else set()
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
  foreign = sorted(existing - _OURS)
  if foreign or existing:
    raise RunError(
        f'{workdir} is not empty and holds no privjax run ({", ".join(sorted(existing))[:80]}); '
        'use a new or empty --workdir'
    )
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tmp = os.path.join(workdir, CONFIG_FILE + '.tmp')
    with open(tmp, 'w') as f:
      json.dump(config_dict, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(workdir, CONFIG_FILE))
  return False


class Checkpoints:
  """Saves every `every` steps (and when forced), keeps the last `keep`; async saves."""

  def __init__(self, workdir: str, *, every: int = 1, keep: int | None = None, read_only=False):
    self.directory = checkpoint_dir(workdir)
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=every, max_to_keep=keep, create=not read_only, read_only=read_only
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)

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
    meta = {'step': int(step), **(meta_fn() if meta_fn else {})}
    items = {
        'params': ocp.args.StandardSave(state['params']),
        'opt_state': ocp.args.StandardSave(state['opt_state']),
        'meta': ocp.args.JsonSave(meta),
        'config': ocp.args.JsonSave(config_dict),
    }
    if jax.tree_util.tree_leaves(state.get('defence')):
      items['defence'] = ocp.args.StandardSave(state['defence'])
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore_state(self, step: int, abstract_state: dict) -> tuple[dict, dict]:
    """(state, meta) in the shapes, dtypes and shardings of `abstract_state`.

    The state's 'defence' is None when the checkpoint has none although `abstract_state` has one
    (a run saved before defences had state: its meta holds what there was).
    """
    items = {
        'params': ocp.args.StandardRestore(abstract_state['params']),
        'opt_state': ocp.args.StandardRestore(abstract_state['opt_state']),
        'meta': ocp.args.JsonRestore(),
    }
    wants_defence = bool(jax.tree_util.tree_leaves(abstract_state.get('defence')))
    has_defence = (epath.Path(self.directory) / str(step) / 'defence').exists()
    if wants_defence and has_defence:
      items['defence'] = ocp.args.StandardRestore(abstract_state['defence'])
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    defence_state = abstract_state.get('defence')
    if wants_defence:
      defence_state = restored.defence if has_defence else None
    state = {
        'params': restored.params,
        'opt_state': restored.opt_state,
        'step': np.int32(restored.meta['step']),
        'defence': defence_state,
    }
    return state, dict(restored.meta)

  def restore_params(self, step: int | None = None) -> tuple[int, Any, dict, dict]:
    """(step, params as numpy pure dict, meta, config) without the optimizer state."""
    steps = self.all_steps()
    if not steps:
      raise RunError(f'{os.path.dirname(self.directory)} has no checkpoint')
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise RunError(
          f'step {step} has no checkpoint in {os.path.dirname(self.directory)}; '
          f'available: {", ".join(map(str, sorted(steps)))}'
      )
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
    return step, params, dict(restored.meta), config_lib.upgrade(dict(restored.config))

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def restore_run(workdir: str, step: int | None = None) -> tuple[int, Any, dict, dict]:
  """(step, params, meta, config) of another run, for `init_from` and evaluation."""
  if not os.path.isdir(workdir):
    raise RunError(f'run directory {workdir} does not exist')
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise RunError(f'{workdir} has no checkpoint (no {CHECKPOINT_DIR}/ folder)')
  ckpt = Checkpoints(workdir, read_only=True)
  try:
    return ckpt.restore_params(step)
  finally:
    ckpt.close()
