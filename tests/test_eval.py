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
from privjax.metrics import results
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


def _metric(entry, name):
  return results.Metric.from_dict(entry['metrics'][name])


def test_eval_py_writes_a_complete_report_and_compares(trained_runs):
  run = trained_runs['siamese']
  result = _eval(
      '--workdir',
      run,
      '--config',
      'configs/eval/default.py:tiny',
      "--config.evaluators=('head', 'probe', 'attackers', 'rank_privacy', 'open_set', "
      "'reconstruction', 'inversion', 'reidentify', 'pixel_reference', 'feature_stats', "
      "'reference_run')",
      f'--config.reference_run.workdir={trained_runs["none"]}',
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out = os.path.join(run, 'eval', 'default', 'step_6')  # the evaluation of checkpoint step 6
  for name in ('report.json', 'report.md', 'privacy_accuracy.png', 'reconstruction.png'):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  report = json.load(open(os.path.join(out, 'report.json')))
  assert report['format'] == results.REPORT_FORMAT
  assert report['step'] == 6 and report['defence']['name'] == 'siamese'
  assert len(report['settings']) == 4  # (none, pca:4) x (0, 1)
  for entry in report['settings']:
    # gender is the primary label: with primary_sweep off (tiny) it is attacked only at the
    # untransformed noiseless setting.
    secrets = {m['secret'] for m in entry['metrics'].values() if m.get('role') == 'leak'}
    assert secrets == ({'identity', 'gender'} if entry['baseline'] else {'identity'})
    for secret in secrets:
      for family in ('linear', 'transfer'):
        m = _metric(entry, f'attackers/{secret}/{family}')
        assert 0 <= m.value <= 100 and m.unit == '%' and m.se > 0
    rank = _metric(entry, 'rank_privacy/mean_normalized_rank')
    assert 0 <= rank.value <= 100 and rank.unit == '%' and rank.se is not None
  noiseless = [e for e in report['settings'] if e['noise_variance'] == 0]
  assert all(_metric(e, 'rank_privacy/ranked_first').value == 100 for e in noiseless)
  assert all(e['uploaded_dims'] == 4 for e in report['settings'] if e['transform'] == 'pca:4')
  # The head on untransformed noiseless features is the full model.
  base = [e for e in report['settings'] if e['baseline']][0]
  assert base['name'] == 'none/0'
  full = results.Metric.from_dict(report['full_model_accuracy'])
  assert _metric(base, 'head/accuracy').value == pytest.approx(full.value)
  assert report['details']['reference_run']['once']['defence']['name'] == 'none'
  raw = {m['secret'] for m in report['once'].values() if m.get('role') == 'raw'}
  assert raw == {'identity', 'gender'}
  assert 0 < _metric(base, 'reconstruction/decoder_l1_ssim_aug/ssim').value <= 1
  assert _metric(base, 'reconstruction/decoder_l1_ssim_aug/ssim').role == 'fidelity'
  assert report['versions']['jax'] and report['seeds'] == {'train': 0, 'eval': 0}
  md = open(os.path.join(out, 'report.md')).read()
  assert '## At a glance' in md and 'identity top-1' in md

  # Every evaluator of the tiny config ran, and says which metrics it produced.
  assert list(report['evaluators']) == [
      'head',
      'probe',
      'attackers',
      'rank_privacy',
      'open_set',
      'reconstruction',
      'inversion',
      'reidentify',
      'pixel_reference',
      'feature_stats',
      'reference_run',
  ]
  attackers = report['evaluators']['attackers']
  assert attackers['where'] == 'each' and 'identity/linear' in attackers['metrics']
  assert 0 < attackers['seconds'] < report['seconds'] and attackers['cpu_seconds'] > 0
  # White-box inversion of 4 fixed attacker-test images, beside the decoder on the same images.
  assert report['details']['inversion']['none/0']['num_images'] == 4
  assert _metric(base, 'inversion/rmle/psnr').value > 0
  assert _metric(base, 'inversion/decoder/psnr').value > 0
  from PIL import Image

  grid = report['images']['inversion: originals, decoder (l1_ssim_aug), rMLE, none/0']
  width, height = Image.open(os.path.join(out, grid)).size  # 3 labelled rows of 4 images
  assert height == 3 * 64 and 4 * 64 < width < 4 * 64 + 200
  # Re-identification: on the originals it is the raw-pixel attacker of the same family and split.
  assert _metric(base, 'reidentify/originals').value == pytest.approx(
      results.Metric.from_dict(report['once']['pixel_reference/identity/linear']).value
  )
  for method in ('decoder_l1_ssim_aug', 'inversion'):
    assert _metric(base, f'reidentify/{method}').role == 'leak'
  assert report['details']['reidentify']['none/0']['inversion']['num_test'] == 4
  # Open-set identity at the baseline setting only (tiny and fast), on the owner's test people.
  with_open_set = [e for e in report['settings'] if 'open_set/gallery_top1' in e['metrics']]
  assert [e['name'] for e in with_open_set] == ['none/0']
  assert 0 <= _metric(with_open_set[0], 'open_set/gallery_top1').value <= 100
  assert '| open-set identity: TAR at FAR 0.01 |' in md
  # TensorBoard: every metric at the checkpoint's step, per setting, and the grids as images.
  (events,) = [f for f in os.listdir(os.path.join(out, 'tensorboard')) if 'tfevents' in f]
  data = open(os.path.join(out, 'tensorboard', events), 'rb').read()
  for tag in (
      b'eval/none/0/attackers/identity/linear',
      b'eval/pca_4/1/head/accuracy',
      b'eval/pixel_reference/identity/linear',
      b'eval/images/reconstruction',
  ):
    assert tag in data, tag

  compare = _eval('--compare', trained_runs['none'], run, '--out', os.path.join(run, 'compare.md'))
  assert compare.returncode == 2  # none has not been evaluated yet
  assert 'no report at' in compare.stderr and 'Traceback' not in compare.stderr


PLUGIN = '''"""A test evaluator: the mean of the uploaded test features."""

import dataclasses

import numpy as np

from privjax.metrics import results

WHERE = 'each'


@dataclasses.dataclass(frozen=True)
class Settings:
  where: str = 'each'
  scale: float = 1.0


def run(ctx, setting, settings):
  z = setting.uploaded(ctx.test_split)
  return {'mean': results.Metric(float(np.mean(z)) * settings.scale, label='mean upload')}
'''


def test_an_evaluator_from_one_file_reaches_the_report(trained_runs, tmp_path, monkeypatch):
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
  # Its section overrides its own defaults: a setting of its own, and where it runs.
  config.mean_upload = ml_collections.ConfigDict({'scale': 2.5, 'where': 'baseline'})
  run = trained_runs['none']
  report = protocol.evaluate_run(run, config)
  assert report['evaluators']['my_evals.mean_upload']['where'] == 'baseline'
  assert report['evaluators']['my_evals.mean_upload']['metrics'] == ['mean']
  assert report['once'] == {}  # only the evaluators named ran
  entries = [e for e in report['settings'] if 'mean_upload/mean' in e['metrics']]
  assert [e['name'] for e in entries] == ['none/0']
  assert set(report['settings'][1]['metrics']) == {'head/accuracy'}
  test_features = features_lib.extract(features_lib.load_run(run), 'test')['features']
  expected = 2.5 * float(np.mean(test_features))
  assert entries[0]['metrics']['mean_upload/mean']['value'] == pytest.approx(expected)
  out = protocol.report_dir(run, config, report['step'])  # where its TensorBoard went
  tables.write_report(report, out)
  md = open(os.path.join(out, 'report.md')).read()
  assert '## mean_upload (at the baseline setting)' in md and '| mean upload |' in md
  (events,) = [f for f in os.listdir(os.path.join(out, 'tensorboard')) if 'tfevents' in f]
  data = open(os.path.join(out, 'tensorboard', events), 'rb').read()
  assert b'eval/none/0/mean_upload/mean' in data


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
  config.attacker_families = ('linear', 'oracle')
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
      os.path.join(trained_runs['siamese'], 'eval', 'default', 'step_6', 'report.json')
  )
  other = json.loads(json.dumps(report))
  other['defence'] = {'name': 'none'}
  for m in other['settings'][0]['metrics'].values():
    if m.get('role') == 'leak' and m.get('secret') == 'identity':
      m['value'] = 12.3
  text = tables.compare_markdown([other, report], ['none', 'siamese'])
  lines = text.splitlines()
  assert lines[0] == '| | none | siamese |'
  row = [l for l in lines if l.startswith('|   **identity: strongest attack**')][0]
  assert row.split('|')[2].strip().startswith('12.3 ± ')
  strongest = tables.strongest(report['settings'][0]['metrics'], 'identity')[1]
  assert row.split('|')[3].strip().startswith(f'{strongest.value:.1f} ± ')


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
