"""The attack-result memo: a hit returns the stored result; changed inputs, settings, code or library
versions miss, and a change to code that cannot change a result does not."""

import json
import os
import shutil

import numpy as np
import pytest

from privjax.evaluate import memo, shared

pytestmark = pytest.mark.unit


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv('PRIVJAX_CACHE_DIR', str(tmp_path / 'cache'))
  return tmp_path / 'cache'


def _data(seed=0):
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(4), 20)
  x = (rng.standard_normal((80, 6)) + y[:, None]).astype(np.float32)
  return x[::2], x[1::2], y[::2], y[1::2]


def _attack(data, seed=0, use_memo=True):
  return shared.attack_secret(
      ['linear'], *data, seed=seed, factory=None, overrides={}, use_memo=use_memo
  )


def _files(cache):
  return sorted(p.name for p in cache.rglob('*.json'))


def test_second_attack_on_the_same_inputs_is_read_back(cache):
  first = _attack(_data())
  assert 'memo' not in first and len(_files(cache)) == 1
  second = _attack(_data())
  assert second.pop('memo') is True
  assert second == json.loads(json.dumps(first))  # the stored record, not a fresh fit


def test_changed_inputs_or_settings_miss(cache):
  data = _data()
  _attack(data)
  x_train, x_test, y_train, y_test = data
  nudged = x_train.copy()
  nudged[3, 2] = np.nextafter(nudged[3, 2], np.float32(np.inf))
  assert 'memo' not in _attack((nudged, x_test, y_train, y_test))
  assert 'memo' not in _attack(data, seed=1)
  assert 'memo' not in _attack((x_train, x_test, y_train, (y_test + 1) % 4))
  assert len(_files(cache)) == 4


def test_memo_off(cache, monkeypatch):
  _attack(_data(), use_memo=False)
  assert not cache.exists()
  monkeypatch.setenv('PRIVJAX_CACHE_DIR', 'off')
  assert memo.cache_root() is None
  assert 'memo' not in _attack(_data()) and 'memo' not in _attack(_data())


def test_a_torn_file_is_a_miss_and_is_rewritten(cache):
  _attack(_data())
  (path,) = list(cache.rglob('*.json'))
  path.write_text('{"families": ')
  assert 'memo' not in _attack(_data())
  assert _attack(_data())['memo'] is True
  assert os.path.getsize(path) > 20


# --- what the key covers --------------------------------------------------------------------------


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
  """A copy of the privjax sources that the memo key reads instead of the real ones."""
  copy = tmp_path / 'privjax'
  shutil.copytree(memo.PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns('__pycache__'))
  monkeypatch.setattr(memo, 'PACKAGE_ROOT', str(copy))
  memo.code_digest.cache_clear()
  yield copy
  memo.code_digest.cache_clear()


def _edit(path):
  with open(path, 'a') as f:
    f.write('\n# an edit\n')
  memo.code_digest.cache_clear()  # a new process would read the files afresh


@pytest.mark.parametrize(
    'source',
    [
        'attacks/linear.py',
        'attacks/common.py',
        'metrics/classification.py',
        'privacy/transforms.py',
        'models/vgg.py',
        'evaluate/shared.py',
        'evaluate/evaluators/attackers.py',
        'evaluate/evaluators/pixel_reference.py',
        'evaluate/evaluators/common.py',
    ],
)
def test_changing_code_that_computes_a_result_misses(cache, package_copy, source):
  _attack(_data())
  assert _attack(_data())['memo'] is True
  _edit(package_copy / source)
  assert 'memo' not in _attack(_data())


def test_a_new_evaluator_module_misses(cache, package_copy):
  _attack(_data())
  (package_copy / 'evaluate' / 'evaluators' / 'brand_new.py').write_text('WHERE = "once"\n')
  memo.code_digest.cache_clear()
  assert 'memo' not in _attack(_data())


def test_changing_unrelated_code_still_hits(cache, package_copy):
  _attack(_data())
  for source in (
      'data/pipeline.py',
      'train/loop.py',
      'report/tables.py',
      'cli.py',
      'evaluate/tensorboard.py',
  ):
    _edit(package_copy / source)
  assert _attack(_data())['memo'] is True


def test_the_key_covers_the_named_sources_and_library_versions(cache, monkeypatch):
  files = memo.source_files(memo.PACKAGE_ROOT)
  for folder in ('attacks/', 'metrics/', 'privacy/', 'models/'):
    assert any(f.startswith(folder) for f in files), folder
  assert {'evaluate/protocol.py', 'evaluate/shared.py'} <= set(files)
  for name in ('common', 'attackers', 'probe', 'pixel_reference', 'reference_run', 'inversion'):
    assert f'evaluate/evaluators/{name}.py' in files, name
  assert not any(f.startswith(('data/', 'train/', 'report/')) for f in files)
  assert {'jax', 'jaxlib', 'flax', 'optax', 'numpy'} <= set(memo.PACKAGES)
  assert memo.package_versions(tuple(memo.PACKAGES))['jax']
  _attack(_data())
  real = memo.package_versions
  bumped = lambda names: dict(real(names), jaxlib='0.0.0-other')
  monkeypatch.setattr(memo, 'package_versions', bumped)
  assert 'memo' not in _attack(_data())
