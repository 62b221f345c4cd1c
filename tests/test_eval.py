"""eval.py end to end on a tiny trained run: report files, caching, comparison, refusals."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from privjax import config as config_lib
from privjax.evaluate import features as features_lib
from privjax.evaluate import protocol
from privjax.evaluate.errors import EvalError
from privjax.train import checkpoint as ckpt_lib
from privjax.train import loop

ROOT = os.path.join(os.path.dirname(__file__), '..')


@pytest.fixture(scope='module')
def trained_runs(tmp_path_factory, tfds_dir):
  """A tiny `simple` run and a `siamese` run fine-tuned from it."""
  module = config_lib.config_module(os.path.join(ROOT, 'configs', 'default.py'))
  root = tmp_path_factory.mktemp('runs')
  runs = {}
  for mode in ('simple', 'siamese'):
    config = module.get_config(f'{mode},tiny')
    config.dataset.data_dir = tfds_dir
    if mode == 'siamese':
      config.init_from = runs['simple']
    runs[mode] = str(root / mode)
    loop.train_and_evaluate(config, runs[mode])
  return runs


def _eval(*args):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'eval.py'), *args],
      capture_output=True,
      text=True,
      cwd=ROOT,
      timeout=900,
  )


def test_eval_py_writes_a_complete_report_and_compares(trained_runs):
  run = trained_runs['siamese']
  result = _eval(
      '--workdir',
      run,
      '--config',
      'configs/eval/default.py:tiny',
      f'--config.reference_run={trained_runs["simple"]}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out = os.path.join(run, 'eval', 'default')
  for name in ('report.json', 'report.md', 'privacy_accuracy.png', 'reconstruction.png'):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  report = json.load(open(os.path.join(out, 'report.json')))
  assert report['step'] == 6 and report['mode'] == 'siamese'
  assert len(report['sweep']) == 4  # (none, pca:4) x (0, 1)
  for entry in report['sweep']:
    baseline = entry['transform'] == 'none' and entry['noise_variance'] == 0
    # gender is the primary label: with primary_secret_sweep off (tiny) it is attacked only at the
    # untransformed noiseless setting.
    assert set(entry['attacks']) == ({'identity', 'gender'} if baseline else {'identity'})
    for attack in entry['attacks'].values():
      assert set(attack['families']) == {'linear', 'transfer'}
      assert attack['top1'] == max(f['top1'] for f in attack['families'].values())
      assert 0 <= attack['top1'] <= attack['top5'] <= 1
    assert 0 <= entry['rank_privacy']['mean_normalized_rank'] <= 1
  noiseless = [e for e in report['sweep'] if e['noise_variance'] == 0]
  assert all(e['rank_privacy']['fraction_first'] == 1.0 for e in noiseless)
  pca = [e for e in report['sweep'] if e['transform'] == 'pca:4']
  assert all(e['uploaded_dims'] == 4 for e in pca)
  # The head on untransformed noiseless features is the full model.
  base = [e for e in noiseless if e['transform'] == 'none'][0]
  assert base['primary_head_accuracy'] == pytest.approx(report['primary_accuracy_full_model'])
  assert report['reference_run']['mode'] == 'none'  # the defence; 'simple' is its alias
  assert set(report['pixel_reference']) == {'identity', 'gender'}
  assert 0 < report['reconstruction']['ssim'] <= 1 and report['reconstruction']['psnr'] > 0
  assert report['versions']['jax'] and report['seeds'] == {'train': 0, 'eval': 0}
  assert 'identity top-1' in open(os.path.join(out, 'report.md')).read()

  compare = _eval(
      '--compare', trained_runs['simple'], run, '--out', os.path.join(run, 'compare.md')
  )
  assert compare.returncode == 2  # simple has not been evaluated yet
  assert 'no report at' in compare.stderr and 'Traceback' not in compare.stderr


def test_features_are_cached_per_checkpoint_step(trained_runs):
  run = features_lib.load_run(trained_runs['simple'])
  first = features_lib.extract(run, 'attacker_test')
  path = os.path.join(run.cache_dir, 'attacker_test.npz')
  assert os.path.exists(path) and f'step_{run.step}' in path
  mtime = os.path.getmtime(path)
  again = features_lib.extract(run, 'attacker_test')
  assert os.path.getmtime(path) == mtime
  np.testing.assert_array_equal(first['features'], again['features'])
  # Cached features are the extractor's output on the split's images.
  images = features_lib.split_images(run.builder, run.config, 'attacker_test')[:4]
  np.testing.assert_allclose(
      np.asarray(run.model.extractor(images)), first['features'][:4], rtol=1e-4, atol=1e-5
  )


def _tiny_eval_config():
  module = config_lib.config_module(os.path.join(ROOT, 'configs', 'eval', 'default.py'))
  return module.get_config('tiny')


def test_bad_requests_are_one_line_errors(trained_runs, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ckpt_lib.RunError, match='has no checkpoint'):
    protocol.evaluate_run(str(empty), _tiny_eval_config())
  with pytest.raises(ckpt_lib.RunError, match=r'step 99 has no checkpoint .*available: 3, 6'):
    protocol.evaluate_run(trained_runs['simple'], _tiny_eval_config(), step=99)
  config = _tiny_eval_config()
  config.secrets = ('age',)
  with pytest.raises(EvalError, match="label 'age' is not in data set synthetic_faces"):
    protocol.evaluate_run(trained_runs['simple'], config)
  config = _tiny_eval_config()
  config.transforms = ('pca:9000',)
  with pytest.raises(EvalError, match='PCA size 9000 is larger than the feature dimension 8192'):
    protocol.evaluate_run(trained_runs['simple'], config)
  result = _eval('--workdir', str(empty), '--config', 'configs/eval/default.py:tiny')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith('error: ')
  assert 'has no checkpoint' in result.stderr and 'Traceback' not in result.stderr


def test_siamese_run_starts_from_the_simple_runs_parameters(trained_runs):
  from flax import nnx

  from privjax import models

  simple = ckpt_lib.restore_run(trained_runs['simple'])[1]
  model = models.SplitModel('vgg_mini', 'conv4_2', 2, rngs=nnx.Rngs(123))
  loaded, skipped = loop.init_params_from_run(model, trained_runs['simple'])
  assert skipped == [] and len(loaded) == 9
  np.testing.assert_array_equal(
      np.asarray(model.extractor.conv1_1.conv.kernel.value),
      simple['extractor']['conv1_1']['conv']['kernel'],
  )


def test_compare_table_lists_runs_side_by_side(trained_runs):
  from privjax.report import tables

  report = tables.load_report(
      os.path.join(trained_runs['siamese'], 'eval', 'default', 'report.json')
  )
  other = json.loads(json.dumps(report))
  other['mode'] = 'simple'
  other['sweep'][0]['attacks']['identity']['top1'] = 0.123
  text = tables.compare_markdown([other, report], ['simple', 'siamese'])
  lines = text.splitlines()
  assert lines[0] == '| | simple | siamese |'
  row = [l for l in lines if l.startswith('| **identity top-1, strongest**')][0]
  assert '**12.3**' in row.split('|')[2]
  assert f'**{100 * report["sweep"][0]["attacks"]["identity"]["top1"]:.1f}**' in row.split('|')[3]


def test_rerun_after_a_crash_before_the_first_checkpoint_still_uses_init_from(
    trained_runs, tiny_config, tmp_path, capsys, monkeypatch
):
  from privjax.data import pipeline

  config = tiny_config('siamese,tiny')
  config.init_from = trained_runs['simple']
  real = pipeline.pair_batches

  def dying(*args, **kwargs):
    for i, batch in enumerate(real(*args, **kwargs)):
      if i == 1:
        raise KeyboardInterrupt('simulated kill before the first checkpoint')
      yield batch

  monkeypatch.setattr(pipeline, 'pair_batches', dying)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert os.path.exists(tmp_path / 'run' / 'config.json')
  capsys.readouterr()
  monkeypatch.setattr(pipeline, 'pair_batches', real)
  config = tiny_config('siamese,tiny')
  config.init_from = trained_runs['simple']
  loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert f'init_from {trained_runs["simple"]}: loaded conv1_1' in capsys.readouterr().out
