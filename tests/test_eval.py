"""eval.py end to end on a tiny trained run: report files, caching, comparison, refusals."""

import json
import os
import shutil
import subprocess
import sys

import conftest
import numpy as np
import pytest

from privjax import config as config_lib
from privjax import errors
from privjax.errors import EvalError
from privjax.evaluate import features as features_lib
from privjax.evaluate import protocol
from privjax.train import checkpoint as ckpt_lib
from privjax.train import loop

pytestmark = pytest.mark.e2e

ROOT = os.path.join(os.path.dirname(__file__), '..')


@pytest.fixture(scope='module')
def trained_runs(trained_run, tmp_path_factory, tfds_dir):
  """A copy of the session's tiny `none` run (these tests evaluate it) and a `siamese` run
  fine-tuned from it."""
  root = tmp_path_factory.mktemp('runs')
  runs = {'none': str(root / 'none'), 'siamese': str(root / 'siamese')}
  shutil.copytree(trained_run.workdir, runs['none'])
  config = conftest.tiny_config_for(tfds_dir, 'siamese,tiny')
  config.init_from = runs['none']
  loop.train_and_evaluate(config, runs['siamese'])
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
      f'--config.reference_run={trained_runs["none"]}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out = os.path.join(run, 'eval', 'default')
  for name in ('report.json', 'report.md', 'privacy_accuracy.png', 'reconstruction.png'):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  report = json.load(open(os.path.join(out, 'report.json')))
  assert report['step'] == 6 and report['defence']['name'] == 'siamese'
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
  assert report['reference_run']['mode'] == 'none'  # the reference run's defence
  assert set(report['pixel_reference']) == {'identity', 'gender'}
  assert 0 < report['reconstruction']['ssim'] <= 1 and report['reconstruction']['psnr'] > 0
  assert report['versions']['jax'] and report['seeds'] == {'train': 0, 'eval': 0}
  md = open(os.path.join(out, 'report.md')).read()
  assert 'identity top-1' in md

  # Every evaluator of the tiny config ran, and says which report keys it produced.
  assert list(report['evaluators']) == [
      'head',
      'probe',
      'attackers',
      'rank_privacy',
      'open_set',
      'pixel_reference',
      'reference_run',
      'reconstruction',
      'inversion',
      'reidentify',
  ]
  attackers = report['evaluators']['attackers']
  assert attackers['settings'] == 'each' and attackers['keys'] == ['attacks']
  assert 0 < attackers['seconds'] < report['seconds'] and attackers['cpu_seconds'] > 0
  # White-box inversion of 4 fixed attacker-test images, beside the decoder on the same images.
  inv = report['inversion']
  assert inv['num_images'] == 4 and inv['steps'] == 5 and inv['transform'] == 'none'
  assert inv['psnr'] > 0 and 0 < inv['ssim'] <= 1 and inv['decoder']['psnr'] > 0
  from PIL import Image

  assert Image.open(os.path.join(out, inv['grid'])).size == (4 * 64, 3 * 64)
  # Re-identification: on the originals it is the raw-pixel attacker of the same family and split.
  reid = report['reidentify']
  raw = report['pixel_reference']['identity']['families']['linear']
  assert reid['family'] == 'linear'
  assert (
      reid['originals']['top1'] == raw['top1'] and reid['originals']['num_test'] == raw['num_test']
  )
  assert set(reid['methods']) == {'decoder', 'inversion'}
  assert reid['methods']['decoder']['ceiling']['top1'] == raw['top1']  # every attacker-test image
  assert reid['methods']['inversion']['num_test'] == 4
  # Open-set identity at the baseline setting only (tiny and fast), on the owner's test people.
  with_open_set = [e for e in report['sweep'] if 'open_set' in e]
  assert [(e['transform'], e['noise_variance']) for e in with_open_set] == [('none', 0.0)]
  open_set = with_open_set[0]['open_set']
  assert set(open_set['tar_at_far']) == {'0.01', '0.001'}
  assert open_set['num_probe'] > 0 and 0 <= open_set['gallery_top1'] <= 1
  assert 'White-box inversion (rMLE' in md and '## Evaluator `open_set`' in md
  assert '| reidentify.originals.top1 |' in md
  # TensorBoard: scalars per setting and the grids as images.
  (events,) = [f for f in os.listdir(os.path.join(out, 'tensorboard')) if 'tfevents' in f]
  data = open(os.path.join(out, 'tensorboard', events), 'rb').read()
  for tag in (
      b'none/attacks/identity/top1',
      b'pca_4/primary_head_accuracy',
      b'reconstruction/grid',
  ):
    assert tag in data, tag
  assert b'inversion/grid' in data and b'reidentify/originals/top1' in data

  compare = _eval('--compare', trained_runs['none'], run, '--out', os.path.join(run, 'compare.md'))
  assert compare.returncode == 2  # none has not been evaluated yet
  assert 'no report at' in compare.stderr and 'Traceback' not in compare.stderr


PLUGIN = '''"""A test evaluator: the mean of the uploaded test features."""

import numpy as np

SETTINGS = 'each'


def run(ctx, setting):
  z = setting.noisy[ctx.test_split]
  return {'mean_upload': {'mean': float(np.mean(z)), 'scale': ctx.config.mean_upload.scale}}
'''


def test_an_evaluator_from_one_file_and_a_config_section_reaches_the_report(
    trained_runs, tmp_path, monkeypatch
):
  import ml_collections

  from privjax.report import tables

  package = tmp_path / 'my_evals'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'mean_upload.py').write_text(PLUGIN)
  monkeypatch.syspath_prepend(str(tmp_path))
  config = _tiny_eval_config()
  config.name = 'plugin'
  config.evaluators = ('head', 'my_evals.mean_upload')
  # Its section: a setting of its own, and where it runs (overriding the module's 'each').
  config.mean_upload = ml_collections.ConfigDict({'scale': 2.5, 'settings': 'baseline'})
  run = trained_runs['none']
  report = protocol.evaluate_run(run, config)
  assert report['evaluators']['my_evals.mean_upload']['settings'] == 'baseline'
  assert report['evaluators']['my_evals.mean_upload']['keys'] == ['mean_upload']
  assert 'pixel_reference' not in report and 'reconstruction' not in report
  entries = [e for e in report['sweep'] if 'mean_upload' in e]
  assert [(e['transform'], e['noise_variance']) for e in entries] == [('none', 0.0)]
  assert all('attacks' not in e for e in report['sweep'])  # only the evaluators named
  test_features = features_lib.extract(features_lib.load_run(run), 'test')['features']
  assert entries[0]['mean_upload'] == {'mean': float(np.mean(test_features)), 'scale': 2.5}
  out = os.path.join(run, 'eval', 'plugin')
  tables.write_report(report, out)
  saved = json.load(open(os.path.join(out, 'report.json')))
  assert saved['sweep'][0]['mean_upload']['scale'] == 2.5
  md = open(os.path.join(out, 'report.md')).read()
  assert '## Evaluator `my_evals.mean_upload`' in md and '| mean_upload.scale | 2.5 |' in md
  (events,) = [f for f in os.listdir(os.path.join(out, 'tensorboard')) if 'tfevents' in f]
  assert b'none/mean_upload/mean' in open(os.path.join(out, 'tensorboard', events), 'rb').read()
  # Two evaluators may not claim one report key.
  config.evaluators = ('head', 'my_evals.mean_upload', 'my_evals.again')
  (package / 'again.py').write_text(PLUGIN)
  config.again = ml_collections.ConfigDict({'settings': 'baseline'})
  with pytest.raises(EvalError, match="evaluator 'my_evals.again' returns 'mean_upload', which"):
    protocol.evaluate_run(run, config)


def test_features_are_cached_per_checkpoint_step(trained_runs):
  run = features_lib.load_run(trained_runs['none'])
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
  with pytest.raises(errors.RunError, match='has no checkpoint'):
    protocol.evaluate_run(str(empty), _tiny_eval_config())
  with pytest.raises(errors.RunError, match=r'step 99 has no checkpoint .*available: 3, 6'):
    protocol.evaluate_run(trained_runs['none'], _tiny_eval_config(), step=99)
  config = _tiny_eval_config()
  config.secrets = ('age',)
  with pytest.raises(EvalError, match="label 'age' is not in data set synthetic_faces"):
    protocol.evaluate_run(trained_runs['none'], config)
  config = _tiny_eval_config()
  config.transforms = ('pca:9000',)
  with pytest.raises(EvalError, match='PCA size 9000 is larger than the feature dimension 8192'):
    protocol.evaluate_run(trained_runs['none'], config)
  config = _tiny_eval_config()
  config.evaluators = ('head', 'attackers', 'nope')
  with pytest.raises(EvalError, match="unknown evaluator 'nope'"):
    protocol.evaluate_run(trained_runs['none'], config)
  config = _tiny_eval_config()
  config.attackers = ('linear', 'oracle')
  with pytest.raises(EvalError, match="unknown attacker 'oracle'"):
    protocol.evaluate_run(trained_runs['none'], config)
  config = _tiny_eval_config()
  config.open_set.label = 'shoe_size'
  with pytest.raises(EvalError, match="open_set: label 'shoe_size'"):
    protocol.evaluate_run(trained_runs['none'], config)
  result = _eval('--workdir', str(empty), '--config', 'configs/eval/default.py:tiny')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith('error: ')
  assert 'has no checkpoint' in result.stderr and 'Traceback' not in result.stderr


def test_siamese_run_starts_from_the_none_runs_parameters(trained_runs):
  from flax import nnx

  from privjax import models

  start = ckpt_lib.restore_run(trained_runs['none'])[1]
  model = models.SplitModel('vgg_mini', 'conv4_2', 2, rngs=nnx.Rngs(123))
  loaded, skipped = loop.init_params_from_run(model, trained_runs['none'])
  assert skipped == [] and len(loaded) == 9
  np.testing.assert_array_equal(
      np.asarray(model.extractor.conv1_1.conv.kernel[...]),
      start['extractor']['conv1_1']['conv']['kernel'],
  )


def test_compare_table_lists_runs_side_by_side(trained_runs):
  from privjax.report import tables

  report = tables.load_report(
      os.path.join(trained_runs['siamese'], 'eval', 'default', 'report.json')
  )
  other = json.loads(json.dumps(report))
  other['mode'] = 'none'
  other['sweep'][0]['attacks']['identity']['top1'] = 0.123
  text = tables.compare_markdown([other, report], ['none', 'siamese'])
  lines = text.splitlines()
  assert lines[0] == '| | none | siamese |'
  row = [l for l in lines if l.startswith('| **identity top-1, strongest**')][0]
  assert '**12.3**' in row.split('|')[2]
  assert f'**{100 * report["sweep"][0]["attacks"]["identity"]["top1"]:.1f}**' in row.split('|')[3]


def test_rerun_after_a_crash_before_the_first_checkpoint_still_uses_init_from(
    trained_runs, tiny_config, tmp_path, capsys, monkeypatch
):
  from privjax.data import pipeline

  config = tiny_config('siamese,tiny')
  config.init_from = trained_runs['none']
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
  config.init_from = trained_runs['none']
  loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert f'init_from {trained_runs["none"]}: loaded conv1_1' in capsys.readouterr().out
