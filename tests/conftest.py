"""Shared fixtures: the tiny synthetic data set and one tiny trained run, made once per session.

`trained_run` is for every test that needs *a* trained run, not a particular training: tests read
it and never write into it (an evaluation writes its caches and reports into the run: evaluate a
copy, `trained_run_copy`); the session checks at its end that nothing changed it. Tests of training
itself (resuming, faults in a training, defences) train their own runs.
"""

import collections
import os
import shutil
import tempfile

import pytest

# Tests must never download anything: TFDS's GCS lookups are switched off.
os.environ.setdefault('TFDS_DISABLE_GCS', '1')
os.environ.setdefault('NO_GCE_CHECK', 'true')
# Attack results are memoised under the user's cache; tests keep theirs in a throw-away folder,
# one per session: `pytest -n 2` (pytest-xdist) workers share their run's folder.
_RUN_ID = os.environ.get('PYTEST_XDIST_TESTRUNUID')
if _RUN_ID:
  os.environ['PRIVJAX_CACHE_DIR'] = os.path.join(
      tempfile.gettempdir(), f'privjax-test-cache-{_RUN_ID}'
  )
  os.makedirs(os.environ['PRIVJAX_CACHE_DIR'], mode=0o700, exist_ok=True)
else:
  os.environ['PRIVJAX_CACHE_DIR'] = tempfile.mkdtemp(prefix='privjax-test-cache-')
# Most of a tiny run's time is XLA compiling the same programs again, in this process and in the
# commands the tests start: JAX's persistent compilation cache (read from these variables, which
# the subprocesses inherit) keeps them for the session, in a throw-away folder too.
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(os.environ['PRIVJAX_CACHE_DIR'], 'xla')
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.1'

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINED_RUN_ARG = 'none,tiny'  # the session's trained run: configs/default.py with these arguments

TrainedRun = collections.namedtuple('TrainedRun', ['workdir', 'result'])


def tiny_config_for(tfds_dir: str, arg: str):
  """configs/default.py's config for `arg`, on the session's tiny data set."""
  from privjax import config as config_lib

  config = config_lib.config_module(os.path.join(ROOT, 'configs', 'default.py')).get_config(arg)
  config.dataset.data_dir = tfds_dir
  return config


def _snapshot(directory: str) -> dict:
  """{relative path: (size, mtime)} of every file under `directory`."""
  out = {}
  for d, _, files in os.walk(directory):
    for name in files:
      stat = os.stat(os.path.join(d, name))
      out[os.path.relpath(os.path.join(d, name), directory)] = (stat.st_size, stat.st_mtime_ns)
  return out


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  from privjax.data import synthetic_faces

  path = str(tmp_path_factory.mktemp('tfds'))
  synthetic_faces.build('tiny', data_dir=path)
  return path


@pytest.fixture(scope='session')
def trained_run(tfds_dir, tmp_path_factory):
  """(workdir, result) of configs/default.py:none,tiny trained for its 6 steps (checkpoints at 3
  and 6), once per session. Read only: copy it (`trained_run_copy`) to evaluate or change it."""
  from privjax.train import loop

  workdir = str(tmp_path_factory.mktemp('trained_run') / 'none')
  result = loop.train_and_evaluate(tiny_config_for(tfds_dir, TRAINED_RUN_ARG), workdir)
  before = _snapshot(workdir)
  yield TrainedRun(workdir, result)
  assert (
      _snapshot(workdir) == before
  ), f'a test changed the shared trained run {workdir}; use trained_run_copy to write into one'


@pytest.fixture
def trained_run_copy(trained_run, tmp_path):
  """A copy of the session's trained run in this test's tmp_path, to evaluate or change."""
  workdir = str(tmp_path / 'none')
  shutil.copytree(trained_run.workdir, workdir)
  return workdir


@pytest.fixture
def tiny_config(tfds_dir):
  def make(arg=TRAINED_RUN_ARG):
    return tiny_config_for(tfds_dir, arg)

  return make


@pytest.fixture
def make_step():
  """`make(config)`: the model, optimizer, initial state and (unjitted) train step of a config,
  as the training loop builds them; labels 'gender' (2 classes) and 'identity' (10) exist."""
  import types

  import jax
  from flax import nnx

  from privjax import defences
  from privjax.train import step as step_lib

  def make(config, *, num_classes=2, label_classes=(('gender', 2), ('identity', 10))):
    context = defences.context_for(config, label_classes)
    model, defence = defences.model_from_config(
        config, num_classes, context, rngs=nnx.Rngs(config.seed)
    )
    graphdef, params = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(params)
    tx = step_lib.defence_optimizer(config.optimizer, defence)
    state = step_lib.init_state(params, tx, defence.init_state(jax.random.key(0)))
    fn = step_lib.make_train_step(graphdef, tx, defence, seed=config.seed)
    return types.SimpleNamespace(
        model=model, graphdef=graphdef, tx=tx, state=state, step=fn, defence=defence
    )

  return make
