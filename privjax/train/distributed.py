"""Multi-process (multi-host) training: start-up, per-process data, decisions made once.

What lives here: `maybe_initialize(config)` (joins the processes of a multi-host job before jax
touches a device), the rows of each global batch that this process loads (`process_rows`), the
assembly of those rows into global arrays (`host_to_global`), and `decide_on_first_process` for
file-system work that one process must do while the others wait for its answer.

A single process (one host, any number of local devices) needs none of this: the loop's data mesh
spans all local devices. Must not import privjax.models or privjax.data.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from privjax.errors import DistributedError


def requested_by_environment(environ=os.environ) -> bool:
  """True under a launcher that starts several processes (explicit coordinator, srun, mpirun)."""
  if environ.get('JAX_COORDINATOR_ADDRESS'):
    return True
  # SLURM_NTASKS alone is also set by salloc; SLURM_STEP_NODELIST means srun started this task.
  if 'SLURM_STEP_NODELIST' in environ and int(environ.get('SLURM_NTASKS') or 1) > 1:
    return True
  return int(environ.get('OMPI_COMM_WORLD_SIZE') or 1) > 1


def maybe_initialize(config=None) -> bool:
  """Calls `jax.distributed.initialize()` when `config.distributed` or the environment asks.

  Must run before the first jax computation. Cluster environments (SLURM, Open MPI, Cloud TPU, GKE)
  are detected by jax itself; elsewhere set JAX_COORDINATOR_ADDRESS=host:port plus
  JAX_NUM_PROCESSES and JAX_PROCESS_ID (read here; jax reads only the address).
  Returns whether this run is multi-process.
  """
  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  wanted = bool(config is not None and config.get('distributed', False))
  if not (wanted or requested_by_environment()):
    return False
  kwargs = {}
  if os.environ.get('JAX_NUM_PROCESSES'):
    kwargs['num_processes'] = int(os.environ['JAX_NUM_PROCESSES'])
  if os.environ.get('JAX_PROCESS_ID'):
    kwargs['process_id'] = int(os.environ['JAX_PROCESS_ID'])
  jax.distributed.initialize(**kwargs)
  logging.info(
      'process %d of %d, %d local of %d devices',
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )
  return jax.process_count() > 1


def process_rows(sharding, global_batch: int) -> tuple[int, int]:
  """(first row, number of rows) of a `global_batch`-row batch held by this process's devices.

  With the loop's 1-D 'data' mesh these rows are contiguous; each process loads only them.
  """
  spans = sorted(
      {
          idx[0].indices(global_batch)[:2]
          for idx in sharding.addressable_devices_indices_map((global_batch,)).values()
      }
  )
  first, stop = spans[0][0], spans[0][1]
  for start, end in spans[1:]:
    if start != stop:
      raise ValueError(f'this process holds rows {spans} of the batch, which are not contiguous')
    stop = end
  return first, stop - first


def host_to_global(batch: dict, sharding, global_batch: int) -> dict:
  """This process's rows (numpy) → global arrays of `global_batch` rows sharded by `sharding`.

  With one process this is `jax.device_put` of the whole batch.
  """
  return {
      k: jax.make_array_from_process_local_data(sharding, v, (global_batch,) + v.shape[1:])
      for k, v in batch.items()
  }


def local_rows(batch: dict, rows: tuple[int, int]) -> dict:
  first, count = rows
  return {k: v[first : first + count] for k, v in batch.items()}


def decide_on_first_process(fn: Callable[[], bool], what: str) -> bool:
  """Runs `fn` on process 0 alone and returns its answer on every process.

  For work on a shared file system (claiming the workdir, preparing a data set) that several
  processes must not race on. If `fn` raises on process 0, it re-raises there and the other
  processes raise DistributedError instead of waiting forever.
  """
  if jax.process_count() == 1:
    return bool(fn())
  code, error = 0, None
  if jax.process_index() == 0:
    try:
      code = 1 if fn() else 0
    except Exception as e:  # re-raised below, after the others have been told
      code, error = 2, e
  code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
  if error is not None:
    raise error
  if code == 2:
    raise DistributedError(f'process 0 failed to {what}; its output says why')
  return bool(code)
