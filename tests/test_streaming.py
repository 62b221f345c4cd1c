"""Feature stores on disk and the attackers that stream from them (privjax.attacks.{shards,streaming}).

Each streaming result is checked against the in-memory reference on data where both run: the
store's reads against the array written, the streaming standardizer against
`common.fit_standardizer`, minibatch Adam against L-BFGS (`fit_linear`) on the same objective, the
Gram-PCA and randomized-PCA attackers against `pca_linear` (the PCAs themselves: tests/test_pca.py).
A subprocess runs both streaming families with a memory budget far below the store's
size and checks its peak resident set, so a path that loads the features whole fails the test.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from privjax.attacks import common, linear, registry, shards, streaming
from privjax.errors import DataError, RunError

pytestmark = pytest.mark.e2e


def _synthetic(n, d, k, seed=0, rank=16):
  """Class means in a rank-`rank` subspace, a strong rank-4 nuisance, noise, offset and ReLU."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, k, n)
  means = rng.normal(size=(k, rank)) * 0.7
  basis = rng.normal(size=(rank, d)) / np.sqrt(rank)
  nuisance = rng.normal(size=(n, 4)) * 3 @ rng.normal(size=(4, d))
  x = (means[y] + rng.normal(size=(n, rank))) @ basis + nuisance + rng.normal(size=(n, d)) + 2.0
  return np.maximum(x, 0).astype(np.float32), y


@pytest.fixture(scope='module')
def problem(tmp_path_factory):
  x, y = _synthetic(2500, 1024, 20)
  store = shards.write_store(
      tmp_path_factory.mktemp('store') / 'features',
      x,
      dtype='float32',
      shard_bytes=700 * 1024 * 4,  # 700 rows a shard: reads cross shard boundaries
      identity=y,
  )
  return x, y, store, np.arange(2000), np.arange(2000, 2500)


def test_store_reads_back_what_was_written(tmp_path):
  x, y = _synthetic(230, 48, 3)
  x = x.reshape(230, 4, 4, 3)
  with shards.ShardWriter(tmp_path / 's', (4, 4, 3), dtype='float16', shard_bytes=50 * 48 * 2) as w:
    w.write(x[:100], identity=y[:100])
    w.write(x[100:], identity=y[100:])
  store = shards.FeatureStore(str(tmp_path / 's'))
  assert (store.num_rows, store.num_shards, store.dim) == (230, 5, 48)
  assert store.feature_shape == (4, 4, 3) and store.dtype == np.float16
  flat = x.reshape(230, -1).astype(np.float16)
  idx = np.array([229, 0, 49, 50, 151, 7, 200])
  np.testing.assert_array_equal(store.rows(idx), flat[idx])
  np.testing.assert_array_equal(store.columns(idx, 5, 31), flat[idx, 5:31].astype(np.float32))
  np.testing.assert_array_equal(store.labels('identity'), y)
  seen = []
  for pos, batch in store.batches(np.arange(10, 230), 64, shuffle_seed=3):
    np.testing.assert_array_equal(batch, flat[10 + pos])
    seen.append(pos)
  seen = np.concatenate(seen)
  assert sorted(seen.tolist()) == list(range(220)) and not np.array_equal(seen, np.arange(220))


def test_store_refuses_overwrites_and_unfinished_or_inconsistent_input(tmp_path):
  x, y = _synthetic(10, 8, 2)
  shards.write_store(tmp_path / 'a', x, identity=y)
  with pytest.raises(RunError, match='never written over'):
    shards.write_store(tmp_path / 'a', x, identity=y)
  w = shards.ShardWriter(tmp_path / 'b', (8,))
  w.write(x, identity=y)
  with pytest.raises(DataError, match='not a finished feature store'):
    shards.FeatureStore(str(tmp_path / 'b'))
  with pytest.raises(DataError, match='differ from the first'):
    w.write(x, gender=y)
  with pytest.raises(DataError, match='do not match'):
    w.write(x[:, :4], identity=y)
  with pytest.raises(DataError, match='dtype'):
    shards.ShardWriter(tmp_path / 'c', (8,), dtype='int8')
  store = shards.FeatureStore(str(tmp_path / 'a'))
  with pytest.raises(DataError, match='no label'):
    store.labels('gender')
  with pytest.raises(DataError, match='holds no row'):
    store.rows_within(8)


def test_streaming_standardizer_matches_in_memory(problem):
  x, _, store, _, _ = problem
  ref = common.fit_standardizer(x)
  got = streaming.fit_streaming_standardizer(store, np.arange(store.num_rows), batch_rows=333)
  np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got.std, ref.std, rtol=1e-5, atol=1e-5)


def test_streaming_standardizer_zeroes_constant_features_as_in_memory(tmp_path):
  x, y = _synthetic(300, 24, 3)
  x[:, 3] = 0.0  # a dead unit
  x[:, 7] = 0.3  # a constant one
  store = shards.write_store(tmp_path / 's', x, dtype='float32', identity=y)
  ref = common.fit_standardizer(x)
  got = streaming.fit_streaming_standardizer(store, np.arange(300), batch_rows=64)
  np.testing.assert_array_equal(np.isinf(got.std), np.isin(np.arange(24), [3, 7]))
  np.testing.assert_array_equal(np.isinf(ref.std), np.isinf(got.std))
  live = np.isfinite(ref.std)
  np.testing.assert_allclose(got.std[live], ref.std[live], rtol=1e-5)


def test_streaming_linear_agrees_with_lbfgs(problem):
  """Minibatch Adam reaches the L-BFGS optimum of the same objective when it says it converged:
  objective within 0.5% of the way from W = 0 to the optimum, test top-1 within 1.5 points (a fit
  5 points below L-BFGS once passed as converged). Stopped early, it says it did not converge,
  with the epochs it spent, as L-BFGS does at its cap."""
  x, y, store, tr, te = problem
  ref = linear.fit_linear(x[tr], y[tr], l2=1e-2, tol=1e-4, max_iter=500)
  got = streaming.fit_streaming_linear(store, y[tr], tr, l2=1e-2, seed=1)
  assert ref.info['converged'] and got.info['converged'], got.info
  assert got.info['suboptimality_bound'] <= 1e-2 and got.info['epochs'] <= 120
  start = np.log(20)  # the objective at W = 0, b = 0
  suboptimal = (got.info['value'] - ref.info['value']) / (start - ref.info['value'])
  assert -1e-4 < suboptimal < 0.005, (got.info['value'], ref.info['value'])
  # The bound is an upper bound on the true gap.
  assert suboptimal <= got.info['suboptimality_bound'] * 1.01 + 1e-4
  top1 = common.evaluate_attacker(got, x[te], y[te])['top1']
  top1_ref = common.evaluate_attacker(ref, x[te], y[te])['top1']
  assert abs(top1 - top1_ref) <= 0.015, (top1, top1_ref)
  assert top1_ref > 0.4  # far above chance (0.05): the comparison means something

  short = streaming.fit_streaming_linear(store, y[tr], tr, l2=1e-2, epochs=2, max_epochs=2, seed=1)
  assert not short.info['converged'] and short.info['epochs'] == 2, short.info
  assert short.info['suboptimality_bound'] > 1e-2


def test_streaming_linear_chooses_l2_on_val_and_reports_a_record(problem):
  _, y, store, tr, te = problem
  result = streaming.run_streaming_attack(
      'streaming_linear',
      store,
      y[tr],
      y[te],
      tr,
      te,
      l2=(10.0, 1e-2),
      epochs=10,
      memory_budget=8 << 20,
  )
  path = result.extra['path']
  assert [p['l2'] for p in path] == [10.0, 1e-2]
  # A penalty of 10 leaves the weights near zero: it must lose on val.
  assert path[1]['val_top1'] > path[0]['val_top1'] and result.extra['l2'] == 1e-2
  summary = result.summary()
  for key in ('top1', 'top1_se', 'top5', 'top5_se', 'num_test', 'log_rank', 'converged'):
    assert key in summary
  assert summary['num_test'] == te.size and summary['top5'] >= summary['top1'] > 0.3
  assert result.extra['batch_rows'] * store.dim * 8 <= 8 << 20


def test_streaming_pca_linear_equals_pca_linear(problem):
  x, y, store, tr, te = problem
  kw = {'sizes': (8, 32), 'max_iter': 100}
  got = streaming.run_streaming_attack(
      'streaming_pca_linear', store, y[tr], y[te], tr, te, memory_budget=128 << 20, **kw
  )
  ref = registry.run_attack('pca_linear', x[tr], y[tr], x[te], y[te], **kw)
  assert (got.extra['pca_k'], got.extra['whiten']) == (ref.extra['pca_k'], ref.extra['whiten'])
  assert abs(got.top1 - ref.top1) <= 0.01, (got.top1, ref.top1)
  assert got.extra['converged'] and got.num_test == ref.num_test


def test_streaming_pca_linear_with_the_randomized_pca_agrees_with_pca_linear(problem):
  """The randomized PCA (few passes over row batches, what the evaluation at scale uses) under the
  streaming attacker."""
  x, y, store, tr, te = problem
  kw = {'sizes': (8, 32), 'max_iter': 100}
  r = streaming.run_streaming_attack(
      'streaming_pca_linear', store, y[tr], y[te], tr, te, method='randomized', n_iter=2, **kw
  )
  ref_r = registry.run_attack('pca_linear', x[tr], y[tr], x[te], y[te], **kw)
  assert r.extra['pca_method'] == 'randomized' and r.extra['pca_k'] == ref_r.extra['pca_k']
  assert abs(r.top1 - ref_r.top1) <= 0.02, (r.top1, ref_r.top1)


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from privjax.attacks import shards, streaming

    cap = int(sys.argv[3])

    def max_rss():
      # VmHWM, this process's own peak: ru_maxrss carries the parent's peak over fork and exec.
      with open('/proc/self/status') as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmHWM'))

    def attack(path):
      store = shards.FeatureStore(path)
      y = store.labels('identity')
      n_train = store.num_rows * 4 // 5
      tr, te = np.arange(n_train), np.arange(n_train, store.num_rows)
      for family, kw in [('streaming_linear', {'l2': 1e-2, 'epochs': 1}),
                         ('streaming_pca_linear', {'sizes': (4,)})]:
        r = streaming.run_streaming_attack(
            family, store, y[tr], y[te], tr, te, memory_budget=cap // 8, **kw)
        out[family] = r.top1
      return store

    out = {}
    # The same code on a narrow store of the same rows first: jax's runtime and most compilations
    # (~250 MB resident here, the PCA codes' L-BFGS fits most of it) are then behind the baseline;
    # the fits on the codes have the same shapes on both stores and hit the cache.
    attack(sys.argv[1])
    out['rss_before'] = max_rss()
    store = attack(sys.argv[2])
    out['rss_after'] = max_rss()
    whole = store.rows(np.arange(store.num_rows))
    out['rss_after_whole_load'] = max_rss()
    print(json.dumps(out))
    """)


def test_streaming_runs_under_a_memory_limit_smaller_than_its_data(tmp_path):
  """Both families in a child process with `memory_budget` an eighth of `cap`, 3/4 of the store's
  size: the child's peak resident set (after a warm-up run on a small store) grows by less than
  `cap`. Control:
  loading the store whole afterwards does push it past `cap`, so the measurement sees such a path.

  (An address-space limit, RLIMIT_AS, is not used: XLA's threads reserve address space lazily
  and abort under it, whatever the path does.)"""
  n, d, k = 600, 400_000, 5
  rng = np.random.default_rng(0)
  y = rng.integers(0, k, n)
  signal = rng.normal(size=(k, d)).astype(np.float32)
  with shards.ShardWriter(tmp_path / 'big', (d,), dtype='float16', shard_bytes=64 << 20) as w:
    for s in range(0, n, 100):
      noise = rng.standard_normal((100, d), dtype=np.float32) * 4
      w.write(noise + signal[y[s : s + 100]], identity=y[s : s + 100])
  store = shards.FeatureStore(str(tmp_path / 'big'))
  warm = shards.write_store(tmp_path / 'warm', store.columns(np.arange(n), 0, 2000), identity=y)
  cap = store.nbytes * 3 // 4
  result = subprocess.run(
      [sys.executable, '-c', _CHILD, warm.directory, store.directory, str(cap)],
      capture_output=True,
      text=True,
      timeout=1200,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out['rss_after'] - out['rss_before'] < cap, out
  assert out['rss_after_whole_load'] - out['rss_before'] > cap, out  # the control
  assert out['streaming_linear'] > 0.5 and out['streaming_pca_linear'] > 0.5, out  # chance: 0.2


def test_shards_module_itself_loads_no_jax():
  """shards.py, loaded on its own (not through privjax.attacks, whose __init__ imports the jax
  attackers), imports numpy and privjax.errors only, so any process can write a store."""
  script = textwrap.dedent("""
      import importlib.util, json, sys
      spec = importlib.util.spec_from_file_location('shards', 'privjax/attacks/shards.py')
      module = sys.modules['shards'] = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(module)
      heavy = ('jax', 'jaxlib', 'flax', 'optax', 'tensorflow')
      print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))
      """)
  root = shards.__file__.rsplit('/privjax/', 1)[0]
  out = subprocess.run(
      [sys.executable, '-c', script], cwd=root, capture_output=True, text=True, check=True
  )
  assert json.loads(out.stdout) == []


def test_evaluation_over_a_memory_budget_streams_with_the_same_report(trained_run_copy, tmp_path):
  """An evaluation whose `memory_budget_gb` is below the tiny run's attacker features reads them
  from a feature store (shards, streaming families, noise added per batch, PCA from the store)
  and reports what the in-memory evaluation reports, in the same structure; `transfer` is listed
  as skipped, not silently dropped. The uploads are the same whatever the source (one noise rule),
  so the cloud head's accuracy on the untransformed settings is identical, noise included; the
  identity linear attacker (streaming Adam against L-BFGS on the same float32 features, both
  converged) agrees within two standard errors of its top-1 (attacker-test has 72 rows: one
  standard error is ~5 points; the identity task is weak at this size, so tiny differences in the
  logits flip the top-1 of a few rows)."""
  from privjax import config as config_lib
  from privjax.errors import EvalError
  from privjax.evaluate import features as features_lib
  from privjax.evaluate import protocol
  from privjax.metrics import results

  workdir = trained_run_copy
  module = config_lib.config_module(
      str(__import__('pathlib').Path(__file__).parents[1] / 'configs' / 'eval' / 'default.py')
  )
  ref_config = module.get_config('tiny')
  ref_config.evaluators = ('head', 'attackers', 'feature_stats')
  ref_config.attacker_families = ('linear', 'transfer')
  ref_config.secrets = ('identity',)
  # One l2 for both (streaming_linear takes linear's l2): the comparison is of optimisers.
  ref_config.attacker_overrides = {
      'transfer': {'max_epochs': 1},
      'linear': {'max_iter': 500, 'l2': 1e-2, 'tol': 1e-4},
  }
  ref_config.attack_memo = False
  ref = protocol.evaluate_run(workdir, ref_config)

  run = features_lib.load_run(workdir)
  biggest = features_lib.feature_bytes(run, 'attacker_train')
  streamed_config = ref_config.copy_and_resolve_references()
  streamed_config.name = 'streamed'
  streamed_config.memory_budget_gb = biggest * 0.9 / 2**30
  streamed_config.feature_store_dtype = 'float32'  # the same features: a test of the optimisers
  got = protocol.evaluate_run(workdir, streamed_config)
  assert 'attacker_train' in got['streamed_splits'] and ref['streamed_splits'] == []
  assert set(got) == set(ref)
  assert got['num_examples'] == ref['num_examples']
  assert got['feature_shape'] == ref['feature_shape']
  assert [e['name'] for e in got['settings']] == [e['name'] for e in ref['settings']]
  for a, b in zip(ref['settings'], got['settings']):
    assert {k for k in a['metrics'] if '/transfer' not in k} == set(b['metrics'])
    if a['transform'] == 'none':
      assert a['metrics']['head/accuracy'] == b['metrics']['head/accuracy'], a['name']
    skipped = got['details']['attackers'][b['name']]['identity']['skipped']
    assert set(skipped) == {'transfer'}
  base_ref = results.Metric.from_dict(ref['settings'][0]['metrics']['attackers/identity/linear'])
  base_got = results.Metric.from_dict(got['settings'][0]['metrics']['attackers/identity/linear'])
  families = got['details']['attackers']['none/0']['identity/families']
  assert families['linear']['streaming_family'] == 'streaming_linear'
  assert families['linear']['converged']
  assert ref['details']['attackers']['none/0']['identity/families']['linear']['converged']
  assert abs(base_got.value - base_ref.value) <= 2 * base_ref.se, (base_got, base_ref)
  # Statistics from a sample of the store's rows equal those of the array.
  assert got['once'] == ref['once']
  # eval.py writes it as it writes any report; the skipped family is in report.json.
  from privjax.report import tables

  tables.write_report(got, str(tmp_path / 'report'))
  saved = json.load(open(tmp_path / 'report' / 'report.json'))
  assert 'transfer' in saved['details']['attackers']['none/0']['identity']['skipped']
  # An evaluator that needs the features whole: a one-line error naming it, before any work.
  streamed_config.evaluators = ('head', 'rank_privacy', 'attackers')
  with pytest.raises(EvalError, match='evaluators rank_privacy need whole feature arrays'):
    protocol.evaluate_run(workdir, streamed_config)
