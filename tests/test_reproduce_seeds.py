"""`privjax reproduce --seeds`: one pipeline per training seed, and the mean ± sd table of them."""

import os
import statistics

import pytest

from privjax.errors import ConfigError
from privjax.evaluate import protocol
from privjax.experiments import reproduce
from privjax.report import tables

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'default.py')


def _eval_config():
  # The tiny evaluation cut to what the table reads: the cloud head and the attackers.
  return reproduce.load_config(
      os.path.join(ROOT, 'configs', 'eval', 'default.py'),
      'tiny',
      {
          'name': 'seeds',
          'evaluators': ('head', 'attackers'),
          'noise_variances': (0.0, 1.0),
          'transforms': ('none',),
          'attacker_families': ('linear',),
      },
  )


def _report(d):
  return tables.load_report(protocol.report_dir(os.path.join(d, 'none'), _eval_config()))


def test_two_seeds_give_the_mean_and_sd_of_the_per_seed_reports(tfds_dir, tmp_path):
  workdir = str(tmp_path / 'demo')
  text = reproduce.run_pipeline(
      workdir, CONFIG, 'tiny', _eval_config(), ['none'], data_dir=tfds_dir, seeds=['0', '1']
  )
  # Seed 0 (the config's own) keeps the layout of a run without --seeds; seed 1 goes to seed1/.
  dirs = [workdir, os.path.join(workdir, 'seed1')]
  reports = [_report(d) for d in dirs]
  assert [r['seeds']['train'] for r in reports] == [0, 1]
  assert [r['train_config']['seed'] for r in reports] == [0, 1]
  for d in dirs:
    assert os.path.exists(os.path.join(d, 'compare.md'))
  assert reports[0]['settings'] != reports[1]['settings']  # two trainings, not one
  assert open(os.path.join(workdir, reproduce.SEEDS_TABLE)).read() == text

  rows = {}
  for line in text.splitlines():
    cells = [c.strip() for c in line.strip('|').split('|')]
    if line.startswith('| none |'):
      rows[(cells[1], float(cells[2]))] = cells
  assert set(rows) == {('none', 0.0), ('none', 1.0)}
  assert '| gender (best utility) | identity top-1 |' in text  # the primary, then the other secret
  for (transform, noise), cells in rows.items():
    head, ident = [], []
    for r in reports:
      (e,) = [
          x for x in r['settings'] if (x['transform'], x['noise_variance']) == (transform, noise)
      ]
      head.append(e['metrics']['head/accuracy']['value'])
      ident.append(e['metrics']['attackers/identity/linear']['value'])  # one family: the strongest
    for cell, values in ((cells[3], head), (cells[4], ident)):
      assert cell == f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'
    per_seed = '; '.join(f'{g:.1f} / {i:.1f} (identity top-1, linear)' for g, i in zip(head, ident))
    assert cells[5] == per_seed


def test_bad_seeds_are_refused_before_anything_is_written(tmp_path):
  workdir = tmp_path / 'w'
  cases = [
      (dict(seeds=['0', 'x']), 'not an integer'),
      (dict(seeds=['1', '1']), 'repeats'),
      (dict(seeds=['0', '1'], overrides={'seed': 2}), 'given once|give the training seeds once'),
      (dict(seeds=['1'], overrides={'seed': 2}), 'disagree'),
  ]
  for kw, message in cases:
    with pytest.raises(ConfigError, match=message):
      reproduce.run_pipeline(str(workdir), CONFIG, 'tiny', _eval_config(), ['none'], **kw)
  assert not workdir.exists()


def test_the_config_seed_keeps_the_workdir_and_others_get_their_folder():
  assert reproduce.seed_dir('runs/demo', 0, 0) == 'runs/demo'
  assert reproduce.seed_dir('runs/demo', 2, 0) == os.path.join('runs/demo', 'seed2')
  assert reproduce.parse_seeds(['0', ' 1', 2]) == [0, 1, 2]
