"""Evaluators at the protocol level, on hand-made contexts (no trained run): white-box inversion
through the deployed extractor, re-identification of reconstructions, open-set identity, how
evaluators are found and validated, and the report's generic rendering of their results."""

import os
import types

import ml_collections
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from privjax import metrics
from privjax.attacks import run_attack
from privjax.errors import EvalError
from privjax.evaluate.evaluators import common, inversion, open_set, reidentify
from privjax.privacy import transforms
from privjax.report import tables

pytestmark = pytest.mark.unit

S = 16  # image side: SSIM needs at least 7 x 7
K = 8  # people


class PixelExtractor(nnx.Module):
  """The identity on images, as a device extractor sees them (0..255 pixels in, [0, 1] out)."""

  def __call__(self, x, *, rng=None, train=False):
    return x / 255.0


def smooth_images(n, seed):
  """Smooth random images in [0.2, 0.8] (a 4 x 4 grid upsampled), float32 [n, S, S, 3]."""
  coarse = np.random.default_rng(seed).uniform(0.2, 0.8, size=(n, 4, 4, 3))
  return np.repeat(np.repeat(coarse, S // 4, axis=1), S // 4, axis=2).astype(np.float32)


def people(n, seed):
  """Images of K people: a fixed face per person plus per-image noise; labels 100..107."""
  faces = 0.5 + 0.05 * np.random.default_rng(99).normal(size=(K, S, S, 3))
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(K), n // K)
  x = np.clip(faces[y] + rng.normal(scale=0.5, size=(len(y), S, S, 3)), 0.0, 1.0)
  return x.astype(np.float32), y + 100


def make_ctx(tmp_path, eval_config, images, data, model=None):
  run = types.SimpleNamespace(
      model=model,
      cache_dir=str(tmp_path / 'cache'),
      config=ml_collections.ConfigDict(
          {'dataset': {'primary': 'gender', 'train_split': 'train', 'test_split': 'test'}}
      ),
  )
  ctx = common.Context(
      run=run,
      config=eval_config,
      secrets=['identity'],
      data=data,
      out_dir=str(tmp_path / 'out'),
      attack=None,
  )
  ctx._images.update(images)
  return ctx


def inversion_config(**kw):
  c = ml_collections.ConfigDict(
      {
          'seed': 0,
          'inversion': {
              'num_images': 6,
              'steps': 300,
              'lr': 0.05,
              'tv_weight': 0.0,
              'tv_weights': (),
              'tune_images': 4,
              'batch_size': 4,
              'init': 'grey',
              'transform': 'none',
              'noise_variance': 0.0,
          },
      }
  )
  c.inversion.update(kw)
  return c


def test_inversion_through_an_identity_extractor_recovers_the_images(tmp_path):
  test, own = smooth_images(10, seed=1), smooth_images(12, seed=2)
  data = {
      'train': {'features': own},
      'attacker_test': {'features': test},  # the identity's features are the images
  }
  ctx = make_ctx(
      tmp_path,
      inversion_config(),
      {'attacker_test': test, 'attacker_train': own},
      data,
      model=types.SimpleNamespace(extractor=PixelExtractor()),
  )
  # A decoder that learned nothing: the mean image, for every test image.
  decoder = np.broadcast_to(own.mean(0), test.shape).copy()
  ctx.add_reconstructions('decoder', np.arange(len(test)), decoder)
  out = inversion.run(ctx, None)['inversion']
  idx = inversion.subset(len(test), 6, seed=0)
  assert len(idx) == 6 and np.all(np.diff(idx) > 0)
  assert out['num_images'] == 6 and out['psnr'] > 30.0, out
  assert out['feature_error'] < 1e-3
  expected = float(np.mean(metrics.psnr(test[idx], decoder[idx])))
  assert out['decoder']['psnr'] == pytest.approx(expected, rel=1e-6)
  assert out['mean_image']['psnr'] == pytest.approx(expected, rel=1e-6)  # mean of the same images
  assert out['psnr'] > out['decoder']['psnr'] + 10
  grid = np.asarray(Image.open(os.path.join(ctx.out_dir, out['grid'])))
  assert grid.shape == (3 * S, 6 * S, 3)  # originals, decoder, rMLE
  np.testing.assert_allclose(grid[:S, :S] / 255.0, test[idx[0]], atol=1 / 255 + 1e-6)
  method_idx, images = ctx.store['reconstructions']['inversion']
  np.testing.assert_array_equal(method_idx, idx)
  assert images.shape == (6, S, S, 3)


def test_inversion_goes_through_the_deployed_pca(tmp_path):
  """Through a PCA of the pixels the target is the projection: rMLE recovers what the projection
  keeps (the images lie in its span) and the transform is fitted on the owner's features."""
  own = smooth_images(40, seed=3)
  test = own[:8]  # in the span of the PCA below
  data = {'train': {'features': own}, 'attacker_test': {'features': test}}
  ctx = make_ctx(
      tmp_path,
      inversion_config(transform='pca:39', num_images=4, steps=400),
      {'attacker_test': test, 'attacker_train': own},
      data,
      model=types.SimpleNamespace(extractor=PixelExtractor()),
  )
  out = inversion.run(ctx, None)['inversion']
  assert os.path.exists(os.path.join(ctx.run.cache_dir, 'pca_39.npz'))  # fitted, then cached
  assert out['transform'] == 'pca:39' and out['psnr'] > 25.0, out
  assert 'decoder' not in out  # no decoder ran: rows are originals and rMLE only
  grid = np.asarray(Image.open(os.path.join(ctx.out_dir, out['grid'])))
  assert grid.shape == (2 * S, 4 * S, 3)


def test_deployed_extractor_adds_the_settings_noise():
  import jax

  pca = transforms.fit_pca(smooth_images(20, seed=0), 5)
  f = inversion.deployed_extractor(
      types.SimpleNamespace(extractor=PixelExtractor()), pca, variance=4.0
  )
  x = smooth_images(2000, seed=1)
  clean = np.asarray(pca.apply(x))
  noisy = np.asarray(f(x * 1.0, jax.random.key(0)))
  assert noisy.shape == (2000, 5)
  assert np.var(noisy - clean) == pytest.approx(4.0, rel=0.05)


def reid_config(**kw):
  c = ml_collections.ConfigDict(
      {
          'seed': 3,
          'attacker_overrides': {'linear': {'l2': (1e-2, 1e-1)}},
          'reidentify': {'label': 'identity', 'family': 'linear'},
      }
  )
  c.reidentify.update(kw)
  return c


def test_reidentify_originals_are_the_raw_pixel_attacker_and_methods_their_subset(tmp_path):
  (x_train, y_train), (x_test, y_test) = people(160, seed=0), people(96, seed=1)
  data = {'attacker_train': {'identity': y_train}, 'attacker_test': {'identity': y_test}}
  ctx = make_ctx(
      tmp_path, reid_config(), {'attacker_train': x_train, 'attacker_test': x_test}, data
  )
  subset = np.arange(0, 96, 3)
  rng = np.random.default_rng(0)
  ctx.add_reconstructions('perfect', subset, x_test[subset])
  ctx.add_reconstructions('noise', np.arange(96), rng.uniform(size=x_test.shape))
  out = reidentify.run(ctx, None)['reidentify']
  raw = run_attack(
      'linear',
      x_train.reshape(len(x_train), -1),
      y_train,
      x_test.reshape(len(x_test), -1),
      y_test,
      seed=3,
      l2=(1e-2, 1e-1),
  )
  assert out['originals']['top1'] == raw.top1 and out['originals']['top1_se'] == raw.top1_se
  assert 0.3 < raw.top1 < 1.0, raw.top1  # neither hopeless nor trivial
  perfect = out['methods']['perfect']
  assert perfect['num_test'] == len(subset) == perfect['ceiling']['num_test']
  assert perfect['top1'] == perfect['ceiling']['top1']  # the originals themselves
  assert out['methods']['noise']['ceiling']['top1'] == raw.top1
  assert out['methods']['noise']['top1'] < 1.0 / K + 4 * np.sqrt((1 / K) * (1 - 1 / K) / 96)
  assert out['chance_top1'] == 1.0 / K and out['family'] == 'linear'


def test_reidentify_fits_once_per_data_set_and_refits_for_other_data(tmp_path, monkeypatch):
  (x_train, y_train), (x_test, y_test) = people(80, seed=0), people(48, seed=1)
  calls = []
  real = reidentify.fit_identity_classifier
  monkeypatch.setattr(
      reidentify, 'fit_identity_classifier', lambda *a, **k: calls.append(1) or real(*a, **k)
  )

  def run(labels, config):
    data = {'attacker_train': {'identity': labels}, 'attacker_test': {'identity': y_test}}
    ctx = make_ctx(tmp_path, config, {'attacker_train': x_train, 'attacker_test': x_test}, data)
    return reidentify.run(ctx, None)['reidentify']['originals']

  first = run(y_train, reid_config())
  assert run(y_train, reid_config()) == first and len(calls) == 1  # the next run of one data set
  run(y_train[::-1].copy(), reid_config())  # other labels: another classifier
  run(y_train, reid_config(family='mlp'))  # another family
  assert len(calls) == 3


def open_set_config(**kw):
  c = ml_collections.ConfigDict(
      {
          'seed': 0,
          'open_set': {
              'label': 'identity',
              'hidden': (32,),
              'fars': (1e-2, 1e-3),
              'gallery_per_person': 1,
              'mlp': {'max_epochs': 40},
          },
      }
  )
  c.open_set.update(kw)
  return c


def _clusters(people_ids, per_person, seed, dims=12):
  rng = np.random.default_rng(seed)
  centres = {p: np.random.default_rng(p).normal(size=dims) * 3 for p in people_ids}
  y = np.repeat(people_ids, per_person)
  x = np.stack([centres[p] for p in y]) + rng.normal(scale=0.5, size=(len(y), dims))
  return x.astype(np.float32), y


def test_open_set_matches_unseen_people_and_refuses_seen_ones(tmp_path):
  x_att, y_att = _clusters(np.arange(20), 10, seed=0)
  x_own, y_own = _clusters(np.arange(100, 130), 4, seed=1)
  data = {'attacker_train': {'identity': y_att}, 'test': {'identity': y_own}}
  ctx = make_ctx(tmp_path, open_set_config(), {}, data)
  setting = types.SimpleNamespace(noisy={'attacker_train': x_att, 'test': x_own})
  out = open_set.run(ctx, setting)['open_set']
  assert set(out['tar_at_far']) == {'0.01', '0.001'}
  assert out['num_people'] == 30 and out['num_gallery'] == 30 and out['num_probe'] == 90
  # Well separated people: matched far above chance (1/30).
  assert out['gallery_top1'] > 0.8 and out['tar_at_far']['0.01']['tar'] > 0.5, out
  assert out['tar_at_far']['0.01']['num_impostor'] == 90 * 29
  data['test']['identity'] = y_own - 100  # the attacker's own people
  with pytest.raises(EvalError, match='open_set on test: open-set people must be unseen'):
    open_set.run(ctx, setting)


def test_unknown_or_broken_evaluators_are_one_line_errors(tmp_path, monkeypatch):
  with pytest.raises(EvalError, match="unknown evaluator 'nope': no module"):
    common.load('nope')
  pkg = tmp_path / 'extra_evals'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  (pkg / 'norun.py').write_text('SETTINGS = "once"\n')
  (pkg / 'badwhere.py').write_text('SETTINGS = "sometimes"\ndef run(ctx, setting):\n  return {}\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(EvalError, match='has no run'):
    common.load('extra_evals.norun')
  module = common.load('extra_evals.badwhere')
  with pytest.raises(EvalError, match="settings 'sometimes' is not one of each, baseline, once"):
    common.settings_of(module, ml_collections.ConfigDict(), 'extra_evals.badwhere')
  # A section's `settings` overrides the module's; its `enabled` switches it.
  config = ml_collections.ConfigDict({'badwhere': {'settings': 'each', 'enabled': False}})
  assert common.settings_of(module, config, 'extra_evals.badwhere') == 'each'
  assert not common.is_enabled(module, config, 'extra_evals.badwhere')


def test_generic_rendering_of_an_evaluators_results():
  report = {
      'sweep': [
          {'transform': 'none', 'noise_variance': 0.0, 'open_set': {'gallery_top1': 0.5}},
          {'transform': 'none', 'noise_variance': 1.0},
      ],
      'mine': {'score': 0.25, 'score_se': 0.01, 'nested': {'n': 3}, '_hidden': 1},
      'reconstruction': {'psnr': 1.0},
      'evaluators': {
          'open_set': {'settings': 'baseline', 'keys': ['open_set']},
          'mine': {'settings': 'once', 'keys': ['mine']},
          'reconstruction': {'settings': 'once', 'keys': ['reconstruction']},
      },
  }
  lines = tables.evaluator_sections(report)
  assert '## Evaluator `mine`' in lines and '## Evaluator `reconstruction`' not in lines
  assert '| mine.score | 0.25 ± 0.01 |' in lines and '| mine.nested.n | 3 |' in lines
  assert not any('_hidden' in l for l in lines)
  assert '| result | none, σ² 0 |' in lines  # only the settings it ran at
  assert '| open_set.gallery_top1 | 0.5 |' in lines
