"""The experiment runner's plan checks (privjax.experiments.runner); the runs it trains and evaluates
are tested through the experiments that use it (test_frontier, test_reproduce_seeds, test_epath)."""

import pytest

from privjax import config_args, errors
from privjax.experiments import runner

pytestmark = pytest.mark.unit


def tiny_config():
  return config_args.load('configs/default.py:tiny')


@pytest.mark.parametrize(
    'plan,match',
    [
        ([('a', None, None), ('a', None, None)], 'names run a twice'),
        (
            [('a', 'b', None), ('b', None, None)],
            'run a starts from b, which is not planned before it',
        ),
        ([('a', None, 'c')], 'run a is compared with c, which is not planned before it'),
    ],
)
def test_a_plan_is_refused_before_anything_trains(tmp_path, plan, match):
  planned = [runner.Planned(n, tiny_config(), init_from=i, reference=r) for n, i, r in plan]
  with pytest.raises(errors.ConfigError, match=match):
    runner.run_plan(str(tmp_path), planned, None)
  assert list(tmp_path.iterdir()) == []


def test_every_config_is_validated_before_the_first_run_trains(tmp_path):
  bad = tiny_config()
  bad.model.cut = 'conv9_9'
  planned = [runner.Planned('a', tiny_config()), runner.Planned('b', bad, init_from='a')]
  with pytest.raises(errors.ConfigError, match="unknown cut layer 'conv9_9'"):
    runner.run_plan(str(tmp_path), planned, None)
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('value', ['0', '-1', 'two', ''])
def test_a_bad_number_of_evaluation_workers_is_one_line(monkeypatch, value):
  monkeypatch.setenv(runner.EVAL_WORKERS_ENV, value)
  with pytest.raises(errors.ConfigError, match='PRIVJAX_EVAL_WORKERS must be a positive integer'):
    runner.eval_workers()


def test_the_number_of_evaluation_workers_is_read_from_the_environment(monkeypatch):
  monkeypatch.setenv(runner.EVAL_WORKERS_ENV, '3')
  assert runner.eval_workers() == 3
  monkeypatch.delenv(runner.EVAL_WORKERS_ENV)
  import os

  assert runner.eval_workers() == (2 if (os.cpu_count() or 1) >= 2 else 1)  # tests run on a CPU


class _Recorder:
  """train_run / evaluate_run stand-ins that log when each starts and ends."""

  def __init__(self, fail=None):
    import threading

    self.events, self.lock, self.fail = [], threading.Lock(), fail

  def log(self, *event):
    with self.lock:
      self.events.append(event)

  def train(self, run_dir, config, **kw):
    import os

    self.log('train', os.path.basename(run_dir))
    return 1.0

  def evaluate(self, run_dir, ec, *, data_dir=None, reuse_report=False):
    import os
    import time

    name = os.path.basename(run_dir)
    self.log('eval start', name)
    time.sleep(0.2)
    if name == self.fail:
      raise errors.EvalError(f'{name} failed')
    self.log('eval end', name)
    return {'name': name}, run_dir + '/report', 2.0


def _plan(names):
  return [
      runner.Planned(n, tiny_config(), init_from=names[0] if i else None)
      for i, n in enumerate(names)
  ]


def test_side_by_side_the_first_evaluation_runs_alone_and_outcomes_keep_the_plans_order(
    tmp_path, monkeypatch
):
  rec = _Recorder()
  monkeypatch.setenv(runner.EVAL_WORKERS_ENV, '2')
  monkeypatch.setattr(runner, 'train_run', rec.train)
  monkeypatch.setattr(runner, 'evaluate_run', rec.evaluate)
  outcomes = runner.run_plan(str(tmp_path), _plan(['a', 'b', 'c']), tiny_config())
  assert [o.name for o in outcomes] == ['a', 'b', 'c']
  assert [o.report['name'] for o in outcomes] == ['a', 'b', 'c']
  ev = rec.events
  first_end = ev.index(('eval end', 'a'))
  # a's evaluation starts once a is trained and before c is; b and c start only after it ends.
  assert ev.index(('train', 'a')) < ev.index(('eval start', 'a')) < ev.index(('train', 'c'))
  assert ev.index(('eval start', 'b')) > first_end
  assert ev.index(('eval start', 'c')) > first_end
  # b and c then run side by side: both start before either ends.
  assert max(ev.index(('eval start', 'b')), ev.index(('eval start', 'c'))) < min(
      ev.index(('eval end', 'b')), ev.index(('eval end', 'c'))
  )


def test_one_worker_trains_every_run_before_the_first_evaluation(tmp_path, monkeypatch):
  rec = _Recorder()
  monkeypatch.setenv(runner.EVAL_WORKERS_ENV, '1')
  monkeypatch.setattr(runner, 'train_run', rec.train)
  monkeypatch.setattr(runner, 'evaluate_run', rec.evaluate)
  runner.run_plan(str(tmp_path), _plan(['a', 'b']), tiny_config())
  assert rec.events == [
      ('train', 'a'),
      ('train', 'b'),
      ('eval start', 'a'),
      ('eval end', 'a'),
      ('eval start', 'b'),
      ('eval end', 'b'),
  ]


def test_a_failed_evaluation_side_by_side_stops_the_plan_with_its_error(tmp_path, monkeypatch):
  rec = _Recorder(fail='a')
  monkeypatch.setenv(runner.EVAL_WORKERS_ENV, '2')
  monkeypatch.setattr(runner, 'train_run', rec.train)
  monkeypatch.setattr(runner, 'evaluate_run', rec.evaluate)
  with pytest.raises(errors.EvalError, match='a failed'):
    runner.run_plan(str(tmp_path), _plan(['a', 'b', 'c']), tiny_config())
  assert ('eval start', 'b') not in rec.events and ('eval start', 'c') not in rec.events


def test_an_evaluation_knows_when_another_runs_beside_it(monkeypatch):
  """protocol counts the evaluations in progress: what marks an evaluator's CPU time as shared."""
  import threading

  from privjax.evaluate import protocol

  seen, inside, read = {}, threading.Barrier(3), threading.Barrier(3)

  def fake(workdir, eval_config, *, step, data_dir):
    seen[workdir] = protocol.activity()
    inside.wait(timeout=10)  # both are in progress here (and the test waits with them)
    seen[workdir + ' beside'] = protocol.activity()
    read.wait(timeout=10)
    return {}

  monkeypatch.setattr(protocol, '_evaluate_run', fake)
  now, started = protocol.activity()
  threads = [threading.Thread(target=protocol.evaluate_run, args=(w, None)) for w in 'ab']
  for t in threads:
    t.start()
  inside.wait(timeout=10)
  read.wait(timeout=10)
  for t in threads:
    t.join()
  assert seen['a beside'] == seen['b beside'] == (now + 2, started + 2)
  assert protocol.activity() == (now, started + 2)


def test_a_failed_training_side_by_side_starts_no_further_evaluation(tmp_path, monkeypatch):
  from privjax.evaluate import protocol

  rec = _Recorder()

  def train(run_dir, config, **kw):
    if run_dir.endswith('c'):
      raise errors.RunError('c failed')
    return rec.train(run_dir, config)

  monkeypatch.setenv(runner.EVAL_WORKERS_ENV, '2')
  monkeypatch.setattr(runner, 'train_run', train)
  monkeypatch.setattr(runner, 'evaluate_run', rec.evaluate)
  with pytest.raises(errors.RunError, match='c failed'):
    runner.run_plan(str(tmp_path), _plan(['a', 'b', 'c']), tiny_config())
  # a's evaluation was in progress (it finishes: the stand-in has no evaluators to stop between);
  # b's, waiting for it, never starts.
  assert ('eval start', 'a') in rec.events and ('eval start', 'b') not in rec.events
  assert not protocol.STOP.is_set()  # a later plan or evaluation is not stopped by this one
