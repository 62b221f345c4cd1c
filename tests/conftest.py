"""Shared fixtures: the tiny synthetic data set, built once per session in a temporary TFDS dir."""

import os
import tempfile

import pytest

# Tests must never download anything: TFDS's GCS lookups are switched off.
os.environ.setdefault('TFDS_DISABLE_GCS', '1')
os.environ.setdefault('NO_GCE_CHECK', 'true')
# Attack results are memoised under the user's cache; tests keep theirs in a throw-away folder.
os.environ['PRIVJAX_CACHE_DIR'] = tempfile.mkdtemp(prefix='privjax-test-cache-')


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  from privjax.data import synthetic_faces

  path = str(tmp_path_factory.mktemp('tfds'))
  synthetic_faces.build('tiny', data_dir=path)
  return path


@pytest.fixture
def tiny_config(tfds_dir):
  from privjax import config as config_lib

  module = config_lib.config_module(
      os.path.join(os.path.dirname(__file__), '..', 'configs', 'default.py')
  )

  def make(arg='simple,tiny'):
    config = module.get_config(arg)
    config.dataset.data_dir = tfds_dir
    return config

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
