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
