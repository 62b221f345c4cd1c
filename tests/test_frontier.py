"""The frontier job on the tiny synthetic config: runs, points, Pareto front, resume, CLI."""

import json
import os
import subprocess
import sys

import pytest

from privjax import errors
from privjax.evaluate import protocol
from privjax.experiments import frontier

pytestmark = pytest.mark.e2e

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def test_pareto_front_by_hand():
  points = [
      {'primary_accuracy': 90, 'identity_top1': 30},  # front
      {'primary_accuracy': 80, 'identity_top1': 10},  # front
      {'primary_accuracy': 80, 'identity_top1': 20},  # dominated by the one above
      {'primary_accuracy': 95, 'identity_top1': 40},  # front
      {'primary_accuracy': 70, 'identity_top1': 40},  # dominated by everything
  ]
  assert frontier.pareto_flags(points) == [True, True, False, True, False]


def test_plan_takes_each_grid_or_its_middle(tiny_config):
  base = tiny_config('none,tiny')
  base.defence.nopeek.strengths = (0.1, 1.0, 10.0)
  runs = frontier.plan(base, ['nopeek', 'siamese+adversarial'])
  assert runs[0] == ('none', 'none', None)
  assert [r[0] for r in runs[1:4]] == ['nopeek_0.1', 'nopeek_1', 'nopeek_10']
  assert frontier.plan(base, ['nopeek'], quick=True)[1:] == [('nopeek_1', 'nopeek', 1.0)]
  with pytest.raises(errors.ConfigError, match="unknown defence 'bogus'"):
    frontier.plan(base, ['bogus'])


def test_frontier_job_trains_evaluates_and_resumes(tiny_config, tmp_path):
  def make_config(defence):
    return tiny_config(defence + ',tiny')

  eval_config = frontier.load_eval_config(os.path.join(ROOT, 'configs/eval/default.py:tiny'), True)
  # The evaluators whose metrics make the frontier's points (utility, single-upload and per-account
  # leaks); the others are tested on their own, and compiling them was most of this test's time.
  eval_config.evaluators = ('head', 'attackers', 'accounts')
  workdir = str(tmp_path / 'frontier')
  result = frontier.run_frontier(
      workdir, make_config, eval_config, defences=['nopeek', 'learned_noise'], quick=True
  )
  saved = json.load(open(os.path.join(workdir, 'frontier.json')))
  assert saved['points'] == json.loads(json.dumps(result['points']))
  runs = {p['run'] for p in saved['points']}
  assert runs == {'none', 'nopeek_1', 'learned_noise_0.1'}
  # (none, pca:4) x (0, 1) settings of the tiny eval config, per run.
  assert len(saved['points']) == 3 * 4
  for p in saved['points']:
    for key in (
        'run',
        'defence',
        'strength',
        'transform',
        'noise_variance',
        'primary_accuracy',
        'identity_top1',
        'pareto',
    ):
      assert key in p
    assert 0 <= p['identity_top1'] <= 100 and 0 <= p['primary_accuracy'] <= 100
  assert any(p['pareto'] for p in saved['points'])
  assert saved['runs']['learned_noise_0.1']['device_params'] > 0
  assert saved['runs']['none']['device_params'] == 0
  for name in ('frontier.md', 'frontier.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0

  # A rerun reuses every training and evaluation.
  stamp = {
      r: os.path.getmtime(
          os.path.join(protocol.report_dir(os.path.join(workdir, r), eval_config), 'report.json')
      )
      for r in runs
  }
  again = frontier.run_frontier(
      workdir, make_config, eval_config, defences=['nopeek', 'learned_noise'], quick=True
  )
  assert again['points'] == result['points']
  assert again['runs'] == result['runs']  # each run's training time is its first one's
  assert stamp == {
      r: os.path.getmtime(
          os.path.join(protocol.report_dir(os.path.join(workdir, r), eval_config), 'report.json')
      )
      for r in runs
  }


def test_frontier_refuses_a_config_that_is_not_none(tiny_config, tmp_path):
  with pytest.raises(errors.ConfigError, match='starts from defence none'):
    frontier.run_frontier(
        str(tmp_path), lambda d: tiny_config('siamese,tiny'), None, defences=['nopeek']
    )
  assert os.listdir(tmp_path) == []


def test_frontier_cli_takes_config_overrides(tfds_dir, tmp_path):
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'privjax',
          'frontier',
          '--config',
          'configs/default.py:tiny',
          f'--config.dataset.data_dir={tfds_dir}',
          '--config.defence.nopeek.wieght=1',
          '--workdir',
          str(tmp_path / 'f'),
      ],
      capture_output=True,
      text=True,
      cwd=ROOT,
      timeout=300,
  )
  assert proc.returncode != 0 and 'wieght' in proc.stderr and 'Traceback' not in proc.stderr
  assert not (tmp_path / 'f').exists()
