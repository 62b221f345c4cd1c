"""The exported extractor: round trips, symbolic batch, PCA, noise, a jax-only loader, the CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from privjax import api, export
from privjax import config as config_lib
from privjax.cost import analysis
from privjax.errors import ConfigError
from privjax.evaluate import features as features_lib
from privjax.metrics import results
from privjax.privacy import pca as pca_lib
from privjax.privacy import transforms

pytestmark = pytest.mark.unit

ROOT = os.path.join(os.path.dirname(__file__), '..')


def pixels(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


def assert_close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape and got.dtype == want.dtype
  # Exported and in-process programs are compiled separately (different fusions), so float32
  # rounding differs; relative to the features' scale.
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def load_config(arg='none'):
  module = config_lib.config_module(os.path.join(ROOT, 'configs', 'default.py'))
  return module.get_config(arg)


@pytest.fixture(scope='module')
def model():
  config = load_config()
  config.model.cut = 'pool3'
  config.input.mean = (0.4, 0.5, 0.6)
  config.input.channel_order = 'BGR'
  # numpy-drawn weights: nnx's initialisers would compile one program per parameter shape.
  return analysis.random_model(config, 2, seed=0)


@pytest.fixture(scope='module')
def pca(model):
  return pca_lib.fit_pca(np.asarray(model.extractor(pixels(40, seed=1))), 8)


def test_round_trip_with_a_symbolic_batch(model, tmp_path):
  manifest = export.export_extractor(model, str(tmp_path))
  extractor = export.load_exported(str(tmp_path))
  for n in (1, 3):
    x = pixels(n)
    assert_close(extractor(x), model.extractor(x))
  assert extractor.manifest == manifest == json.loads((tmp_path / 'manifest.json').read_text())
  assert manifest['inputs'] == [
      {
          'name': 'pixels',
          'shape': ['batch', 64, 64, 3],
          'dtype': 'uint8',
          'range': '0..255, RGB, NHWC',
      }
  ]
  assert manifest['output'] == {'shape': ['batch', 8, 8, 64], 'dtype': 'float32'}
  assert manifest['normalization']['mean'] == [0.4, 0.5, 0.6]
  assert manifest['normalization']['channel_order'] == 'BGR'
  assert (manifest['arch'], manifest['cut'], manifest['pca_k']) == ('vgg_mini', 'pool3', None)
  assert manifest['jax_version'] == jax.__version__ and manifest['format_version'] == 1


def test_round_trip_with_pca_and_a_fixed_batch(model, pca, tmp_path):
  export.export_extractor(model, str(tmp_path), pca=pca, batch_size=2, input_dtype='float32')
  extractor = export.load_exported(str(tmp_path / 'extractor.bin'))
  x = pixels(2).astype(np.float32)
  assert_close(extractor(x), pca.apply(model.extractor(x)))
  assert extractor.manifest['output'] == {'shape': [2, 8], 'dtype': 'float32'}
  with pytest.raises(Exception, match='shape'):
    extractor(pixels(3).astype(np.float32))


def test_zero_noise_is_no_noise_and_noise_matches_in_process(model, pca, tmp_path):
  x = pixels(3)
  export.export_extractor(model, str(tmp_path / 'plain'), pca=pca)
  export.export_extractor(model, str(tmp_path / 'zero'), pca=pca, noise_variance=0.0)
  plain = export.load_exported(str(tmp_path / 'plain'))
  zero = export.load_exported(str(tmp_path / 'zero'))
  np.testing.assert_array_equal(zero(x), plain(x))
  assert zero.manifest['inputs'] == plain.manifest['inputs']

  export.export_extractor(model, str(tmp_path / 'noisy'), pca=pca, noise_variance=0.5)
  noisy = export.load_exported(str(tmp_path / 'noisy'))
  assert [i['name'] for i in noisy.manifest['inputs']] == ['pixels', 'key']
  key = np.array([7, 11], np.uint32)
  want = transforms.add_gaussian_noise(
      jax.random.wrap_key_data(key, impl='threefry2x32'), pca.apply(model.extractor(x)), 0.5
  )
  assert_close(noisy(x, key), want)
  assert not np.allclose(noisy(x, np.array([7, 12], np.uint32)), want, atol=0.1)


def test_loader_needs_only_jax(model, tmp_path):
  export.export_extractor(model, str(tmp_path / 'artifact'))
  x = pixels(2)
  np.save(tmp_path / 'x.npy', x)
  np.save(tmp_path / 'want.npy', np.asarray(model.extractor(x)))
  script = f"""
import sys
sys.path.insert(0, {str(tmp_path / 'artifact')!r})
import numpy as np
from load_extractor import load_exported
f = load_exported({str(tmp_path / 'artifact')!r})
got = np.asarray(f(np.load({str(tmp_path / 'x.npy')!r})))
want = np.load({str(tmp_path / 'want.npy')!r})
np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
assert not [m for m in sys.modules if m.startswith(('privjax', 'flax'))], 'privjax was imported'
print('ok', f.manifest['cut'])
"""
  # From another directory, so the repository's privjax is not even importable by accident.
  proc = subprocess.run(
      [sys.executable, '-c', script], cwd=tmp_path, capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == 'ok pool3'


def test_bad_requests_are_one_line_errors(model, pca, tmp_path):
  other = pca_lib.PCA(pca.mean[:10], pca.components[:, :10], pca.explained_variance, (10,))
  cases = [
      (dict(noise_variance=-1.0), 'noise variance must be finite and >= 0'),
      (dict(pca=other), 'the PCA projects 10 features but cut pool3 of vgg_mini has 4096'),
      (dict(input_dtype='int16'), "input dtype 'int16' is not valid"),
      (dict(batch_size=0), 'batch size must be positive'),
      (dict(clip=3.0), 'a clip without noise bounds nothing'),
      (dict(clip=-1.0, noise_variance=0.1), 'clip'),
  ]
  try:
    import tensorflow  # noqa: F401
  except ImportError:
    cases.append((dict(tflite=True), 'TFLite export needs TensorFlow, which is not installed'))
  for kwargs, message in cases:
    with pytest.raises(ConfigError, match=message) as e:
      export.export_extractor(model, str(tmp_path / 'bad'), **kwargs)
    assert '\n' not in str(e.value)
  assert not (tmp_path / 'bad').exists()


def _evaluation(step, transform, noise_variance):
  """A report with one setting, as evaluation would write it for the run."""
  leak = results.percent(0.42, 0.03, label='identity top-1, linear', role='leak', secret='identity')
  return {
      'format': results.REPORT_FORMAT,
      'step': step,
      'primary': 'gender',
      'secrets': ['identity'],
      'seeds': {'train': 0, 'eval': 0},
      'eval_config': {'name': 'default'},
      'train_config': {'dataset': {'name': 'synthetic_faces'}},
      'full_model_accuracy': results.percent(0.5, 0.05).to_dict(),
      'settings': [
          {
              'name': 'pca_4/0.5',
              'transform': transform,
              'noise_variance': noise_variance,
              'metrics': {'attackers/identity/linear': leak.to_dict()},
          }
      ],
      'once': {},
  }


def make_run(config, workdir, step):
  """A run directory as training leaves it, with random weights: what export needs, no training."""
  from privjax.data import pipeline
  from privjax.train import checkpoint as ckpt_lib
  from privjax.train import step as step_lib

  builder = pipeline.get_builder(config.dataset)
  num_classes = pipeline.label_num_classes(builder, config.dataset.primary)
  model = analysis.random_model(config, num_classes, seed=3)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  config_dict = config.to_dict()
  config_dict['dataset']['digest'] = pipeline.check_run_data(None, builder)  # as training does
  ckpt_lib.prepare_workdir(workdir, config_dict)
  checkpoints = ckpt_lib.Checkpoints(workdir)
  opt_state = step_lib.make_optimizer(config.optimizer).init(params)
  checkpoints.save(
      step,
      {'params': params, 'opt_state': opt_state},
      config_dict,
      force=True,
      meta_fn=lambda: {'defence': {}},  # the summary of defence none, as training saves it
  )
  checkpoints.close()
  return model


def test_export_command_uses_the_evaluations_pca(tiny_config, tmp_path):
  workdir, out = str(tmp_path / 'run'), str(tmp_path / 'artifact')
  model = make_run(tiny_config(), workdir, step=5)
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'privjax',
          'export',
          '--workdir',
          workdir,
          '--out',
          out,
          '--pca_k',
          '4',
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'vgg_mini cut conv4_2 at step 5: (pixels uint8[' in proc.stdout

  # The PCA is the one evaluation fits for 'pca:4', cached where evaluation looks for it; without
  # noise there is no clip.
  pca = pca_lib.load_pca(os.path.join(workdir, 'eval', 'cache', 'step_5', 'pca_4.npz'))
  extractor = export.load_exported(out)
  x = pixels(4)
  z = np.asarray(pca.apply(model.extractor(x)))
  assert_close(extractor(x), z)
  assert extractor.manifest['checkpoint_step'] == 5 and extractor.manifest['pca_k'] == 4
  assert extractor.manifest['run'] == 'run' and extractor.manifest['clip_norm'] is None
  # Its model card: the run's data set and digest, defence and transform; no evaluation yet.
  card = open(os.path.join(out, 'MODEL_CARD.md')).read()
  digest = json.load(open(os.path.join(workdir, 'config.json')))['dataset']['digest']
  assert f'content digest `{digest}`' in card and '- data set `synthetic_faces`' in card
  assert '- `none`' in card and '| PCA | k = 4,' in card and '| Gaussian noise | none |' in card
  report_dir = api.report_dir(workdir)
  assert f'No evaluation found (looked for `{report_dir}/report.json`)' in card
  # With noise, each upload is clipped before it to the 99th percentile of the projected training
  # features' norms, as evaluation does; the card copies the evaluation's figures at that setting.
  os.makedirs(report_dir)
  with open(os.path.join(report_dir, 'report.json'), 'w') as f:
    json.dump(_evaluation(step=5, transform='pca:4', noise_variance=0.5), f)
  export.export_run(workdir, str(tmp_path / 'noisy'), pca_k=4, noise_variance=0.5)
  card = open(tmp_path / 'noisy' / 'MODEL_CARD.md').read()
  assert '| **identity: strongest attack** | 42.0 ± 3.0 % (identity top-1, linear) |' in card
  noisy = export.load_exported(str(tmp_path / 'noisy'))
  clip = noisy.manifest['clip_norm']
  train = np.asarray(
      pca.apply(features_lib.extract(features_lib.load_run(workdir), 'train')['features'])
  )
  assert clip == pytest.approx(np.percentile(np.linalg.norm(train, axis=1), 99), rel=1e-5)
  key = np.array([7, 11], np.uint32)
  clipped = z * np.minimum(1, clip / np.linalg.norm(z, axis=1, keepdims=True))
  want = transforms.add_gaussian_noise(
      jax.random.wrap_key_data(key, impl='threefry2x32'), clipped, 0.5
  )
  assert_close(noisy(x, key), want)
  # --clip_percentile 0 exports the noise without the clip.
  export.export_run(
      workdir, str(tmp_path / 'unclipped'), pca_k=4, noise_variance=0.5, clip_percentile=0
  )
  unclipped = export.load_exported(str(tmp_path / 'unclipped'))
  assert unclipped.manifest['clip_norm'] is None
  want = transforms.add_gaussian_noise(jax.random.wrap_key_data(key, impl='threefry2x32'), z, 0.5)
  assert_close(unclipped(x, key), want)

  # Checked against the run's config before anything is restored.
  with pytest.raises(ConfigError, match=r'--pca_k must be in \[1, 8192\] \(the features of cut'):
    export.export_run(workdir, str(tmp_path / 'other'), pca_k=10**6)
  # The artifact's directory is not written into again without overwrite=True.
  with pytest.raises(ConfigError, match='is not empty: it holds another export'):
    export.export_run(workdir, out)
