"""The top-level Python API on hand-made reports: `import privjax` stays light, `load_report` finds
a run's report where evaluation writes it, and `compare` is one row per run × setting × metric."""

import json
import math
import os
import subprocess
import sys

import pytest

import privjax
from privjax import errors
from privjax.errors import ConfigError, EvalError
from privjax.metrics import results
from privjax.report import frame, tables

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _report(workdir='/runs/siamese', leak=0.36, step=6):
  """A report with two settings (3 metrics each) and one metric run once."""
  head = lambda a: results.percent(a, 0.005, label='gender accuracy, cloud head', role='utility')
  attack = lambda a, family: results.percent(
      a, 0.012, label=f'identity top-1, {family}', role='leak', secret='identity'
  )
  settings = []
  for name, transform, variance, scale in (
      ('none/0', 'none', 0.0, 1.0),
      ('pca_4/1', 'pca:4', 1.0, 0.5),
  ):
    settings.append(
        {
            'name': name,
            'transform': transform,
            'noise_variance': variance,
            'clip': None,
            'uploaded_dims': 8,
            'baseline': name == 'none/0',
            'metrics': {
                'head/accuracy': head(0.9 * scale).to_dict(),
                'attackers/identity/linear': attack(leak * scale, 'linear').to_dict(),
                'rank_privacy/identity': (
                    results.Metric(3.5 * scale, label='rank privacy').to_dict()
                ),
            },
        }
    )
  raw = results.percent(
      0.8, 0.009, label='identity top-1, raw pixels', role='raw', secret='identity'
  )
  return {
      'format': results.REPORT_FORMAT,
      'workdir': workdir,
      'step': step,
      'defence': {'name': 'siamese'},
      'arch': 'vgg_mini',
      'cut': 'conv4_2',
      'primary': 'gender',
      'secrets': ['identity'],
      'full_model_accuracy': results.percent(0.92, 0.01).to_dict(),
      'settings': settings,
      'once': {'pixel_reference/identity/linear': raw.to_dict()},
      'evaluators': {
          'head': {'where': 'each'},
          'attackers': {'where': 'each'},
          'rank_privacy': {'where': 'each'},
          'pixel_reference': {'where': 'once'},
      },
      'seconds': 1.0,
  }


def test_import_privjax_loads_neither_jax_nor_pandas():
  script = (
      'import sys, privjax\n'
      'heavy = sorted({m.split(".")[0] for m in sys.modules} & {"jax", "flax", "pandas"})\n'
      'assert not heavy and "privjax.api" not in sys.modules, (heavy, "privjax.api")\n'
      'assert callable(privjax.compare) and "privjax.api" in sys.modules\n'
      'assert {"compare", "load_report", "load_run", "report_dir"} <= set(dir(privjax))\n'
  )
  subprocess.run([sys.executable, '-c', script], cwd=ROOT, check=True, timeout=60)
  with pytest.raises(AttributeError, match="has no attribute 'load_runs'"):
    privjax.load_runs  # noqa: B018


def test_compare_is_one_row_per_run_setting_and_metric():
  a, b = _report('/runs/none', leak=0.6), _report('/runs/siamese/', leak=0.3)
  df = privjax.compare([a, b])
  assert list(df.columns) == list(frame.COLUMNS)
  assert len(df) == 2 * (2 * 3 + 1)
  assert sorted(set(df.run)) == ['none', 'siamese']  # the run directories' names
  row = df[
      (df.run == 'none') & (df.setting == 'pca_4/1') & (df.metric == 'attackers/identity/linear')
  ]
  assert row.value.item() == pytest.approx(30.0) and row.se.item() == pytest.approx(1.2)
  assert (row.unit.item(), row.role.item(), row.secret.item()) == ('%', 'leak', 'identity')
  assert (row['transform'].item(), row.noise_variance.item(), row.baseline.item()) == (
      'pca:4',
      1.0,
      False,
  )
  assert row.label.item() == 'identity top-1, linear' and row.uploads.item() == 1
  rank = df[(df.run == 'siamese') & (df.metric == 'rank_privacy/identity') & df.baseline]
  assert rank.value.item() == 3.5 and math.isnan(rank.se.item()) and rank.unit.item() == ''
  once = df[df.setting == 'once']
  assert list(once.role) == ['raw', 'raw'] and once.noise_variance.isna().all()
  assert once['transform'].isna().all()
  # What a notebook does with it: the strongest leak per run at the baseline, and a wide view.
  leaks = df[(df.role == 'leak') & (df.setting == 'none/0')].set_index('run').value
  assert leaks.to_dict() == pytest.approx({'none': 60.0, 'siamese': 30.0})
  wide = df.pivot_table(index='label', columns='run', values='value')
  assert wide.loc['gender accuracy, cloud head', 'none'] == pytest.approx((90.0 + 45.0) / 2)


def test_compare_takes_names_a_dict_paths_and_run_directories(tmp_path):
  report = _report(str(tmp_path / 'run'))
  folder = tmp_path / 'somewhere'
  tables.write_report(report, str(folder))
  assert set(privjax.compare({'x': report, 'y': str(folder)}).run) == {'x', 'y'}
  assert set(privjax.compare([report, folder / 'report.json'], ['p', 'q']).run) == {'p', 'q'}
  with pytest.raises(ConfigError, match='runs named twice: run; give distinct names'):
    privjax.compare([report, str(folder)])
  with pytest.raises(ConfigError, match='2 runs or reports but 1 names'):
    privjax.compare([report, report], ['a'])
  with pytest.raises(EvalError, match="format 'privjax.report/1'"):
    privjax.compare([{**report, 'format': 'privjax.report/1'}])


def test_load_report_of_a_run_reads_the_evaluations_report_folder(tmp_path):
  from privjax import api

  run = tmp_path / 'run'
  with pytest.raises(errors.RunError, match='has no checkpoint to evaluate'):
    privjax.load_report(str(run.mkdir() or run))
  with pytest.raises(FileNotFoundError, match='run eval.py on that run first'):
    privjax.load_report(run, step=6)
  where = api.report_dir(run, step=6)
  from privjax import config_args
  from privjax.evaluate import protocol

  eval_config = config_args.load('configs/eval/default.py')
  assert where == protocol.report_dir(str(run), eval_config, 6)
  tables.write_report(_report(str(run)), where)
  assert privjax.load_report(run, step=6)['workdir'] == str(run)
  assert privjax.load_report(os.path.join(where, 'report.json'))['step'] == 6
  # Another evaluation's report folder, by its config.
  eval_config.name = 'other'
  tables.write_report(_report(str(run), step=3), protocol.report_dir(str(run), eval_config, 3))
  assert privjax.load_report(run, eval_config=eval_config, step=3)['step'] == 3
  with pytest.raises(FileNotFoundError, match='no report or run directory at'):
    privjax.load_report(tmp_path / 'nothing')


def test_compare_without_pandas_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'pandas', None)  # import pandas raises ImportError
  with pytest.raises(
      ImportError, match=r"^privjax's DataFrames need pandas: pip install 'privjax\[notebook\]'"
  ):
    privjax.compare([_report()])


def test_report_json_round_trip_keeps_the_frame(tmp_path):
  report = _report(str(tmp_path / 'run'))
  tables.write_report(report, str(tmp_path / 'r'))
  loaded = json.loads((tmp_path / 'r' / 'report.json').read_text())
  direct, read = privjax.compare({'a': report}), privjax.compare({'a': loaded})
  assert direct.equals(read)
