"""Data-parallel, multi-process and bfloat16 training on the tiny config.

Runs on several devices happen in subprocesses (the device count is fixed when jax starts); this
file is also their worker: `python tests/test_distributed.py '<job json>'`.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from privjax import config as config_lib
from privjax import errors
from privjax.data import pipeline
from privjax.train import checkpoint as ckpt_lib
from privjax.train import distributed, loop

pytestmark = pytest.mark.e2e

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
TRAIN_KEYS = (
    'loss',
    'ce',
    'contrastive',
    'accuracy',
    'feature_norm',
    'dist_same',
    'dist_diff',
    'grad_norm',
)


def _config(arg, data_dir, **overrides):
  module = config_lib.config_module(os.path.join(ROOT, 'configs', 'default.py'))
  config = module.get_config(arg)
  config.dataset.data_dir = data_dir
  config.update(overrides)
  return config


def _worker(job):
  """Runs `job['runs']` on `job['devices']` CPU devices; prints one JSON line per run."""
  jax.config.update('jax_num_cpu_devices', job['devices'])
  for run in job['runs']:
    config = _config(run['arg'], job['data_dir'], **run.get('set', {}))
    try:
      result = loop.train_and_evaluate(config, run['workdir'])
      out = {'result': result, 'process': jax.process_index(), 'devices': jax.device_count()}
    except (errors.ConfigError, errors.RunError) as e:
      out = {'error': type(e).__name__, 'message': str(e)}
    print('RESULT ' + json.dumps(out), flush=True)


def _spawn(job, env=None):
  return subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), json.dumps(job)],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=ROOT,
      env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})),
  )


def _results(proc, timeout=300):
  out, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, err[-3000:]
  return [json.loads(l[len('RESULT ') :]) for l in out.splitlines() if l.startswith('RESULT ')]


def _train_lines(workdir):
  return [l for l in map(json.loads, open(os.path.join(workdir, 'metrics.jsonl'))) if 'ce' in l]


def _params(workdir):
  return ckpt_lib.restore_run(workdir)[1]


def _assert_same_params(a, b):
  # Per tensor, not per element: Adam turns the sign of a near-zero gradient, which summation order
  # can flip, into a full +-lr step for that element. Different data would move every element.
  def close(x, y):
    assert np.linalg.norm(x - y) <= 1e-4 * np.linalg.norm(y) + 1e-5, np.abs(x - y).max()

  jax.tree_util.tree_map(close, a, b)


def _rewound_copy(workdir, dest, step):
  """A copy of a finished run as if it had been killed right after its `step` checkpoint."""
  shutil.copytree(workdir, dest)
  for s in ckpt_lib.Checkpoints(dest, read_only=True).all_steps():
    if s > step:
      shutil.rmtree(os.path.join(ckpt_lib.checkpoint_dir(dest), str(s)))
  return dest


@pytest.fixture(scope='module')
def one_device_run(tfds_dir, tmp_path_factory):
  """The reference: the tiny Siamese run (6 steps, checkpoints at 3 and 6) on one device."""
  assert jax.device_count() == 1, 'the reference run must use a single device'
  workdir = str(tmp_path_factory.mktemp('dp') / 'one_device')
  loop.train_and_evaluate(_config('siamese,tiny', tfds_dir), workdir)
  return workdir


def test_four_devices_match_one_and_checkpoints_move_between_device_counts(
    one_device_run, tfds_dir, tmp_path
):
  four = str(tmp_path / 'four_devices')
  from_one = _rewound_copy(one_device_run, str(tmp_path / 'one_then_four'), 3)
  job = {
      'devices': 4,
      'data_dir': tfds_dir,
      'runs': [
          {'arg': 'siamese,tiny', 'workdir': four},
          {'arg': 'siamese,tiny', 'workdir': from_one},
          {'arg': 'siamese,tiny', 'workdir': str(tmp_path / 'odd'), 'set': {'batch_size': 6}},
      ],
  }
  full, resumed_on_four, odd = _results(_spawn(job))
  assert full['devices'] == 4 and full['result']['step'] == 6

  # Same global batch, same trajectory: data parallelism only changes where the work runs.
  ref, dp = _train_lines(one_device_run), _train_lines(four)
  assert [l['step'] for l in ref] == [l['step'] for l in dp] == [2, 4, 6]
  for a, b in zip(ref, dp):
    np.testing.assert_allclose(
        [b[k] for k in TRAIN_KEYS],
        [a[k] for k in TRAIN_KEYS],
        rtol=1e-4,
        atol=1e-5,
        err_msg=f'step {a["step"]}',
    )
  assert full['result']['test_accuracy'] == pytest.approx(
      json.load(open(os.path.join(one_device_run, 'final_metrics.json')))['test_accuracy']
  )
  reference = _params(one_device_run)
  _assert_same_params(reference, _params(four))

  # A step-3 checkpoint from one device resumed on four, and one from four resumed on one.
  assert resumed_on_four['result']['step'] == 6
  _assert_same_params(reference, _params(from_one))
  from_four = _rewound_copy(four, str(tmp_path / 'four_then_one'), 3)
  assert loop.train_and_evaluate(_config('siamese,tiny', tfds_dir), from_four)['step'] == 6
  _assert_same_params(reference, _params(from_four))

  assert odd == {
      'error': 'ConfigError',
      'message': 'batch_size=6 is not divisible by the 4 ' 'devices; use a multiple of 4',
  }
  assert not os.path.exists(tmp_path / 'odd')


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _steps_logged(workdir):
  return [l['step'] for l in map(json.loads, open(os.path.join(workdir, 'metrics.jsonl')))]


def test_two_processes_train_as_one(one_device_run, tfds_dir, tmp_path):
  fresh = str(tmp_path / 'two_processes')
  resumed = _rewound_copy(one_device_run, str(tmp_path / 'one_then_two_processes'), 3)
  job = {
      'devices': 2,
      'data_dir': tfds_dir,
      'runs': [
          {'arg': 'siamese,tiny', 'workdir': fresh},
          {'arg': 'siamese,tiny', 'workdir': resumed},
      ],
  }
  env = {'JAX_COORDINATOR_ADDRESS': f'localhost:{_free_port()}', 'JAX_NUM_PROCESSES': '2'}
  procs = [_spawn(job, dict(env, JAX_PROCESS_ID=str(i))) for i in range(2)]
  first, second = [_results(p) for p in procs]
  assert [r['process'] for r in first] == [0, 0] and [r['process'] for r in second] == [1, 1]
  assert first[0]['devices'] == second[0]['devices'] == 4
  # Both processes computed the same replicated metrics; each run matches one process, one device.
  for a, b in zip(first, second):
    for key in ('train_loss', 'train_ce', 'train_grad_norm', 'test_accuracy', 'test_ce'):
      assert a['result'][key] == b['result'][key], key
  reference = _params(one_device_run)
  _assert_same_params(reference, _params(fresh))
  _assert_same_params(reference, _params(resumed))  # a collective restore, then saves
  # Files are written once: one metrics line per logging or evaluation step.
  assert _steps_logged(fresh) == _steps_logged(one_device_run)
  # A resumed run drops the rows after its checkpoint before writing them again: one history.
  assert _steps_logged(resumed) == _steps_logged(one_device_run)


def test_process_rows_of_pair_batches_make_up_the_global_batch(tfds_dir):
  config = _config('siamese,tiny', tfds_dir)
  split = pipeline.load_split(pipeline.get_builder(config.dataset), 'train')
  pre = pipeline.preprocess_from_config(config, train=True)

  def batches(rows=None):
    return list(
        pipeline.pair_batches(
            split, 'gender', 8, pre, seed=0, start_step=2, num_steps=2, threads=1, rows=rows
        )
    )

  whole = batches()
  shares = [batches((first, 2)) for first in (0, 2, 4, 6)]
  for s, batch in enumerate(whole):
    for key in batch:
      np.testing.assert_array_equal(np.concatenate([share[s][key] for share in shares]), batch[key])


def test_process_rows_and_environment_detection():
  mesh = loop.data_mesh()
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  assert distributed.process_rows(sharding, 8) == (0, 8)
  assert not distributed.requested_by_environment({})
  srun = {'SLURM_NTASKS': '4', 'SLURM_STEP_NODELIST': 'n[1-2]'}
  assert distributed.requested_by_environment(srun)
  assert not distributed.requested_by_environment(dict(srun, SLURM_NTASKS='1'))
  assert not distributed.requested_by_environment({'SLURM_NTASKS': '4'})  # salloc, not srun
  assert distributed.requested_by_environment({'OMPI_COMM_WORLD_SIZE': '2'})
  assert distributed.requested_by_environment({'JAX_COORDINATOR_ADDRESS': 'host:1234'})


def test_bfloat16_learns_like_float32_and_keeps_float32_state(tmp_path, make_step):
  rng = np.random.default_rng(0)
  batch = {
      'image': rng.integers(0, 256, (4, 2, 64, 64, 3)).astype(np.uint8),
      'label': rng.integers(0, 2, (4, 2)).astype(np.int32),
  }
  batch['same'] = (batch['label'][:, 0] == batch['label'][:, 1]).astype(np.float32)
  ces, states = {}, {}
  for dtype in ('float32', 'bfloat16'):
    config = _config('siamese,tiny', '', optimizer=dict(lr=3e-4), model=dict(dtype=dtype))
    setup = make_step(config)
    state, step = setup.state, jax.jit(setup.step)
    ces[dtype] = []
    for _ in range(25):
      state, metrics = step(state, batch)
      assert metrics['ce'].dtype == metrics['contrastive'].dtype == jnp.float32
      ces[dtype].append(float(metrics['ce']))
    states[dtype] = state
  # The same trajectory up to bf16 rounding, and both memorise the batch within 25 steps.
  assert ces['bfloat16'][0] == pytest.approx(ces['float32'][0], rel=0.01)
  assert np.abs(np.subtract(ces['bfloat16'], ces['float32'])).max() < 0.1, ces
  assert ces['float32'][-1] < 0.05 and ces['bfloat16'][-1] < 0.05, ces

  state = states['bfloat16']
  floats = jax.tree_util.tree_leaves((state['params'], state['opt_state']))
  assert {x.dtype for x in floats if jnp.issubdtype(x.dtype, jnp.floating)} == {np.dtype('float32')}
  ckpt = ckpt_lib.Checkpoints(str(tmp_path / 'run'))
  ckpt.save(25, state, {'model': {'dtype': 'bfloat16'}}, force=True)
  ckpt.close()
  saved = _params(str(tmp_path / 'run'))
  assert {x.dtype for x in jax.tree_util.tree_leaves(saved)} == {np.dtype('float32')}


if __name__ == '__main__':
  _worker(json.loads(sys.argv[1]))
