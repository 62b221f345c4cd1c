"""Evaluators at the protocol level, on hand-made contexts (no trained run): learned decoders and
white-box inversion through the deployed extractor, re-identification of reconstructions, open-set identity, how
evaluators are found, configured and validated, that nothing outside an evaluator's module names
it, and the report's generic rendering of their metrics."""

import ast
import dataclasses
import os
import pathlib
import types

import ml_collections
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from privjax.attacks import registry, run_attack
from privjax.attacks.common import Kept
from privjax.errors import EvalError
from privjax.evaluate import shared, sources
from privjax.evaluate.evaluators import (
    adapted_head,
    common,
    head,
    inversion,
    open_set,
    reconstruction,
    reidentify,
)
from privjax.metrics import image_quality, results
from privjax.privacy import pca as pca_lib
from privjax.report import tables

ROOT = pathlib.Path(__file__).resolve().parents[1]
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
      features=sources.Features.from_arrays(data, run=run),
      out_dir=str(tmp_path / 'out'),
      attack=None,
  )
  ctx._images.update(images)
  ctx.where = 'none/0'
  return ctx


def deployed(pca=None, clip=None):
  return sources.Deployed('none' if pca is None else f'pca:{pca.k}', pca, clip)


def baseline(ctx, pca=None):
  """The untransformed (or `pca`) noiseless setting of the context's features, without a clip."""
  return ctx.features.setting(deployed(pca), 0.0, baseline=True)


def inversion_ctx(tmp_path, test, own):
  """A context for the inversion evaluator through the identity extractor: the uploads of
  attacker-test `test` are its pixels, the attacker's own photos `own`."""
  data = {'train': {'features': own}, 'attacker_test': {'features': test}}
  ctx = make_ctx(
      tmp_path,
      ml_collections.ConfigDict({'seed': 0}),
      {'attacker_test': test, 'attacker_train': own},
      data,
      model=types.SimpleNamespace(extractor=PixelExtractor()),
  )
  ctx.evaluator = 'inversion'
  return ctx


def inversion_settings(**kw):
  base = dict(num_images=6, steps=300, tv_weight=0.0, tv_weights=(), tune_images=4, batch_size=4)
  return inversion.Settings(**{**base, 'init': 'grey', **kw})


def test_decoder_methods_beat_the_mean_image_and_reach_reidentification(tmp_path):
  """Uploads that are the images themselves (an identity extractor): every decoder method beats
  the mean image, is reported under its own prefix, and leaves its images under its own name for
  re-identification (which judges every method it finds: the reidentify tests below)."""
  own, test = smooth_images(240, seed=2), smooth_images(24, seed=1)
  data = {
      'train': {'features': own},
      'attacker_train': {'features': own},
      'attacker_test': {'features': test},
  }
  ctx = make_ctx(
      tmp_path,
      reid_config(),
      {'attacker_test': test, 'attacker_train': own},
      data,
      model=types.SimpleNamespace(extractor=PixelExtractor()),
  )
  ctx.evaluator = 'reconstruction'
  settings = reconstruction.Settings(methods=('mse', 'l1_ssim_aug'), steps=60)
  reconstruction.check(None, settings, None)
  out = reconstruction.run(ctx, baseline(ctx), settings)
  mean = out['mean_image/ssim'].value
  assert out['mean_image/ssim'].role == '' and out['mean_image/psnr'].unit == 'dB'
  for method in ('decoder_mse', 'decoder_l1_ssim_aug'):
    assert out[f'{method}/ssim'].role == 'fidelity'
    assert out[f'{method}/ssim'].value > mean + 0.1, (method, out[f'{method}/ssim'], mean)
    rows, images = ctx.reconstructions()[method]
    np.testing.assert_array_equal(rows, np.arange(24))
    expected = np.mean(image_quality.ssim(test, images))
    assert out[f'{method}/ssim'].value == pytest.approx(float(expected), rel=1e-5)
    details = ctx.details['reconstruction']['none/0'][method]
    assert details['val_ssim'] > details['mean_image_val_ssim']
  (filename,) = ctx.written_images.values()
  grid = np.asarray(Image.open(os.path.join(ctx.out_dir, filename)))
  # originals, then one row per method, after a column of the rows' names
  assert grid.shape[0] == 3 * S and grid.shape[1] > 16 * S and grid.shape[2] == 3
  for bad in (('l2',), ('mse', 'mse'), ()):
    with pytest.raises(EvalError, match='reconstruction.methods'):
      reconstruction.check(None, reconstruction.Settings(methods=bad), None)


def test_inversion_through_an_identity_extractor_recovers_the_images(tmp_path):
  test, own = smooth_images(10, seed=1), smooth_images(12, seed=2)
  ctx = inversion_ctx(tmp_path, test, own)
  # A decoder that learned nothing: the mean image, for every test image.
  decoder = np.broadcast_to(own.mean(0), test.shape).copy()
  ctx.add_reconstructions('decoder_mse', np.arange(len(test)), decoder)
  out = inversion.run(ctx, baseline(ctx), inversion_settings())
  idx = inversion.subset(len(test), 6, seed=0)
  assert len(idx) == 6 and np.all(np.diff(idx) > 0)
  assert out['rmle/psnr'].value > 30.0 and out['rmle/psnr'].unit == 'dB', out
  assert out['rmle/ssim'].role == 'fidelity' and out['decoder/ssim'].role == ''
  details = ctx.details['inversion']['none/0']
  assert details['num_images'] == 6 and details['feature_error'] < 1e-3
  expected = float(np.mean(image_quality.psnr(test[idx], decoder[idx])))
  assert out['decoder/psnr'].value == pytest.approx(expected, rel=1e-6)
  assert out['rmle/psnr'].value > out['decoder/psnr'].value + 10
  ((title, filename),) = ctx.written_images.items()
  assert title == 'inversion: originals, decoder (mse), rMLE, none/0'
  grid = np.asarray(Image.open(os.path.join(ctx.out_dir, filename)))
  label_width = grid.shape[1] - 6 * S  # the rows' names: original, decoder, rMLE
  assert grid.shape[0] == 3 * S and label_width > 0
  np.testing.assert_allclose(
      grid[:S, label_width : label_width + S] / 255.0, test[idx[0]], atol=1 / 255 + 1e-6
  )
  method_idx, images = ctx.reconstructions()['inversion']
  np.testing.assert_array_equal(method_idx, idx)
  assert images.shape == (6, S, S, 3)


def test_inversion_from_the_decoder_starts_at_the_decoders_images(tmp_path):
  """init='decoder': rMLE starts at each image's decoder reconstruction (a perfect decoder here,
  so two short steps keep the originals, where the mean-image start is far from them), and
  refuses to run where no decoder reconstructed the images."""
  test, own = smooth_images(10, seed=1), smooth_images(12, seed=2)
  ctx = inversion_ctx(tmp_path, test, own)
  with pytest.raises(EvalError, match="init='decoder' at none/0: no decoder"):
    inversion.run(ctx, baseline(ctx), inversion_settings(init='decoder'))
  ctx.add_reconstructions('decoder_l1_ssim_aug', np.arange(len(test)), test.copy())
  short = dict(steps=2, lr=1e-3)
  refined = inversion.run(ctx, baseline(ctx), inversion_settings(init='decoder', **short))
  from_mean = inversion.run(ctx, baseline(ctx), inversion_settings(init='mean', **short))
  assert refined['rmle/psnr'].value > 40.0 and from_mean['rmle/psnr'].value < 25.0
  assert refined['rmle/psnr'].label.startswith('rMLE from the decoder')
  assert ctx.details['inversion']['none/0']['init'] == 'mean'  # the last run's
  with pytest.raises(EvalError, match='inversion.init must be one of'):
    inversion.check(None, inversion_settings(init='zeros'), None)


def test_inversion_goes_through_the_deployed_pca(tmp_path):
  """Through a PCA of the pixels the target is the projection: rMLE recovers what the projection
  keeps (the images lie in its span), at the setting it runs at."""
  own = smooth_images(40, seed=3)
  test = own[:8]  # in the span of the PCA below
  ctx = inversion_ctx(tmp_path, test, own)
  pca = pca_lib.fit_pca(own, 39)
  out = inversion.run(ctx, baseline(ctx, pca), inversion_settings(num_images=4, steps=400))
  assert out['rmle/psnr'].value > 25.0, out
  assert 'decoder/psnr' not in out  # no decoder ran: rows are originals and rMLE only
  ((title, filename),) = ctx.written_images.items()
  assert title.endswith(': originals, rMLE, pca:39/0')  # no decoder row
  grid = np.asarray(Image.open(os.path.join(ctx.out_dir, filename)))
  assert grid.shape[0] == 2 * S and grid.shape[1] > 4 * S


def test_deployed_extractor_adds_the_settings_noise():
  import jax

  pca = pca_lib.fit_pca(smooth_images(20, seed=0), 5)
  f = shared.deployed_extractor(
      types.SimpleNamespace(extractor=PixelExtractor()), pca, variance=4.0
  )
  x = smooth_images(2000, seed=1)
  clean = np.asarray(pca.apply(x))
  noisy = np.asarray(f(x * 1.0, jax.random.key(0)))
  assert noisy.shape == (2000, 5)
  assert np.var(noisy - clean) == pytest.approx(4.0, rel=0.05)


def reid_config():
  return ml_collections.ConfigDict(
      {'seed': 3, 'attacker_overrides': {'linear': {'l2': (1e-2, 1e-1)}}}
  )


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
  ctx.evaluator = 'reidentify'
  out = reidentify.run(ctx, baseline(ctx), reidentify.Settings(face=False))
  raw = run_attack(
      'linear',
      x_train.reshape(len(x_train), -1),
      y_train,
      x_test.reshape(len(x_test), -1),
      y_test,
      seed=3,
      l2=(1e-2, 1e-1),
  )
  assert out['originals'].value == pytest.approx(100 * raw.top1)
  assert out['originals'].se == pytest.approx(100 * raw.top1_se)
  assert 0.3 < raw.top1 < 1.0, raw.top1  # neither hopeless nor trivial
  assert out['perfect'].role == 'leak' and out['perfect'].secret == 'identity'
  assert out['originals'].role == ''  # the ceiling is not a leak of the uploads
  details = ctx.details['reidentify']['none/0']
  assert details['perfect']['num_test'] == len(subset)
  assert details['perfect']['top1'] == details['perfect']['ceiling_on_the_same_images']
  assert details['noise']['ceiling_on_the_same_images'] == raw.top1
  assert out['noise'].value < 100 * (1.0 / K + 4 * np.sqrt((1 / K) * (1 - 1 / K) / 96))


def test_reidentify_fits_once_per_data_set_and_refits_for_other_data(tmp_path, monkeypatch):
  (x_train, y_train), (x_test, y_test) = people(80, seed=0), people(48, seed=1)
  calls = []
  monkeypatch.setattr(registry, '_FITS', Kept(registry.FIT_CACHE_SIZE))
  for family in ('linear', 'mlp'):
    real = registry.ATTACKERS[family]
    monkeypatch.setitem(
        registry.ATTACKERS, family, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k)
    )

  def run(labels, family='linear'):
    data = {'attacker_train': {'identity': labels}, 'attacker_test': {'identity': y_test}}
    ctx = make_ctx(
        tmp_path, reid_config(), {'attacker_train': x_train, 'attacker_test': x_test}, data
    )
    settings = reidentify.Settings(family=family, face=False)
    return reidentify.run(ctx, baseline(ctx), settings)['originals']

  first = run(y_train)
  assert run(y_train) == first and len(calls) == 1  # the next run of one data set
  # The attacker on raw pixels with the same family, data and seed is the same fit.
  flat = x_train.reshape(len(x_train), -1).astype(np.float32)
  registry.fit('linear', flat, y_train, seed=3, **reid_config().attacker_overrides.linear.to_dict())
  assert len(calls) == 1
  run(y_train[::-1].copy())  # other labels: another classifier
  run(y_train, family='mlp')  # another family
  assert len(calls) == 3
  registry.fit('linear', flat, y_train, seed=4, **reid_config().attacker_overrides.linear.to_dict())
  assert len(calls) == 4  # another seed


def _clusters(people_ids, per_person, seed, dims=12):
  rng = np.random.default_rng(seed)
  centres = {p: np.random.default_rng(p).normal(size=dims) * 3 for p in people_ids}
  y = np.repeat(people_ids, per_person)
  x = np.stack([centres[p] for p in y]) + rng.normal(scale=0.5, size=(len(y), dims))
  return x.astype(np.float32), y


def test_open_set_matches_unseen_people_and_refuses_seen_ones(tmp_path):
  x_att, y_att = _clusters(np.arange(20), 10, seed=0)
  x_own, y_own = _clusters(np.arange(100, 130), 4, seed=1)
  data = {
      'attacker_train': {'features': x_att, 'identity': y_att},
      'test': {'features': x_own, 'identity': y_own},
  }
  ctx = make_ctx(tmp_path, ml_collections.ConfigDict({'seed': 0}), {}, data)
  ctx.evaluator = 'open_set'
  settings = open_set.Settings(hidden=(32,), mlp={'max_epochs': 40})
  out = open_set.run(ctx, baseline(ctx), settings)
  assert set(out) == {'tar_at_far_0.01', 'tar_at_far_0.001', 'gallery_top1', 'chance'}
  details = ctx.details['open_set']['none/0']
  assert details['num_people'] == 30 and details['num_gallery'] == 30
  assert details['num_probe'] == 90
  # Well separated people: matched far above chance (1/30).
  assert out['gallery_top1'].value > 80 and out['tar_at_far_0.01'].value > 50, out
  assert out['chance'].value == pytest.approx(100 / 30)
  assert details['tar_at_far']['0.01']['num_impostor'] == 90 * 29
  ctx.features.splits['test'].labels['identity'] = y_own - 100  # the attacker's own people
  with pytest.raises(EvalError, match='open_set on test: open-set people must be unseen'):
    open_set.run(ctx, baseline(ctx), settings)


def test_unknown_or_broken_evaluators_are_one_line_errors(tmp_path, monkeypatch):
  with pytest.raises(
      EvalError, match="unknown evaluator 'nope': no module .* built in: .*attackers"
  ):
    common.load('nope')
  pkg = tmp_path / 'extra_evals'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  (pkg / 'norun.py').write_text('WHERE = "once"\n')
  (pkg / 'badwhere.py').write_text(
      'WHERE = "sometimes"\ndef run(ctx, setting, settings):\n  return {}\n'
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(EvalError, match='has no run'):
    common.load('extra_evals.norun')
  module = common.load('extra_evals.badwhere')
  settings = common.settings_for(module, ml_collections.ConfigDict(), 'extra_evals.badwhere')
  with pytest.raises(EvalError, match="where='sometimes' is not one of each, baseline, once"):
    common.where(module, settings)


class LinearHead(nnx.Module):
  """Logits = flattened features @ kernel: a cloud head whose weights the test chooses."""

  def __init__(self, kernel):
    self.kernel = nnx.Param(np.asarray(kernel, np.float32))

  def __call__(self, x, *, rng=None, train=False):
    return x.reshape(x.shape[0], -1) @ self.kernel[...]


def two_cue_features(n, seed, flip_robust=False):
  """[n, 2, 2, 1] features of labels 0/1: a cue of +-0.1 with no spread (perfect, but drowned by
  noise of variance 1) and a cue of +-1.5 with unit spread (robust), two features of noise."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 2, n)
  sign = 2.0 * y - 1.0
  f = rng.normal(size=(n, 4))
  f[:, 0] = 0.1 * sign
  f[:, 1] = 1.5 * (-sign if flip_robust else sign) + rng.normal(size=n)
  return f.reshape(n, 2, 2, 1).astype(np.float32), y


def test_adapted_head_beats_the_unadapted_head_under_heavy_noise(tmp_path):
  (train, y_train), (test, y_test) = two_cue_features(1000, 1), two_cue_features(1000, 2)
  # The attacker's photos contradict the robust cue: a head adapted on them would fail the test.
  attacker, y_attacker = two_cue_features(1000, 3, flip_robust=True)
  data = {
      'train': {'features': train, 'gender': y_train},
      'test': {'features': test, 'gender': y_test},
      'attacker_train': {'features': attacker, 'gender': y_attacker},
  }
  ctx = make_ctx(tmp_path, ml_collections.ConfigDict({'seed': 0}), {}, data)
  # The trained head reads only the perfect cue: right on every clean upload.
  kernel = np.zeros((4, 2), np.float32)
  kernel[0] = (-1.0, 1.0)
  ctx.run.model = types.SimpleNamespace(head=LinearHead(kernel))
  ctx.evaluator = 'adapted_head'
  settings = adapted_head.Settings(lr=3e-2, max_epochs=20)
  assert adapted_head.run(ctx, baseline(ctx), settings) == {}  # nothing to adapt to
  assert head.run(ctx, baseline(ctx), None)['accuracy'].value == 100.0
  noisy = ctx.features.setting(deployed(), 1.0, baseline=False)
  unadapted = head.run(ctx, noisy, None)['accuracy']
  adapted = adapted_head.run(ctx, noisy, settings)['accuracy']
  assert adapted.role == 'utility' and adapted.unit == unadapted.unit
  assert unadapted.value < 60.0, unadapted
  # The robust cue under the noise: 1.5 / sqrt(2) standard deviations from the threshold, ~86%.
  assert adapted.value > 80.0 and adapted.value - unadapted.value > 4 * adapted.se, adapted
  # A head with other classes than the labels' is refused in one line.
  ctx.run.model = types.SimpleNamespace(head=LinearHead(np.zeros((4, 3), np.float32)))
  with pytest.raises(EvalError, match='every class 0..2 must be present'):
    adapted_head.run(ctx, noisy, settings)


def test_settings_come_from_the_module_and_the_config_overrides_them():
  sections = common.config_sections()
  assert set(sections) == set(common.available())  # a section per evaluator, nothing else
  for name in common.available():  # read from the source: the dataclass's own defaults
    cls = common.settings_class(common.load(name))
    assert common.declared_defaults(name) == dataclasses.asdict(cls()), name
  assert sections.inversion.steps == inversion.Settings().steps
  config = ml_collections.ConfigDict({'inversion': {'steps': 7, 'where': 'each'}})
  settings = common.settings_for(inversion, config, 'inversion')
  assert settings.steps == 7 and settings.lr == inversion.Settings().lr
  assert common.where(inversion, settings) == 'each'  # a setting's `where` beats WHERE
  config.inversion.stepz = 3
  with pytest.raises(EvalError, match="evaluator 'inversion': .*stepz.*; its settings: where"):
    common.settings_for(inversion, config, 'inversion')


# Where an evaluator's name may appear besides its module: the jobs that choose evaluators for an
# evaluation, as a config does; and the layers below the evaluation (arrays in, numbers out), whose
# functions share names with the evaluators that call them (metrics.rank_privacy).
CHOOSERS = ('experiments', 'commands')
BELOW = ('attacks', 'metrics', 'privacy', 'models', 'data', 'objectives', 'defences', 'train')


def names_in(tree: ast.AST, names) -> list[tuple[int, str]]:
  """(line, name) for every string constant that is one of `names` (docstrings aside) and every
  import of an evaluator module by name."""
  docstrings = {
      id(node.body[0].value)
      for node in ast.walk(tree)
      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
      and node.body
      and isinstance(node.body[0], ast.Expr)
  }
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
      found.append((node.lineno, node.value))
    elif isinstance(node, ast.ImportFrom) and (node.module or '').endswith('evaluate.evaluators'):
      found += [(node.lineno, a.name) for a in node.names if a.name in names]
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
      for m in modules:
        if (m or '').startswith('privjax.evaluate.evaluators.'):
          found.append((node.lineno, m.rsplit('.', 1)[-1]))
  return [(line, n) for line, n in found if n in names]


def test_nothing_outside_an_evaluators_module_names_it():
  """A new evaluator is one module: the library never names an evaluator elsewhere (an evaluator
  its own name, and common.py none)."""
  names = set(common.available())
  offenders = []
  for path in (ROOT / 'privjax').rglob('*.py'):
    rel = path.relative_to(ROOT / 'privjax')
    if rel.parts[0] in CHOOSERS + BELOW:
      continue
    for line, name in names_in(ast.parse(path.read_text()), names):
      if path.parent.name == 'evaluators' and name == path.stem:
        continue
      offenders.append(f'{rel}:{line}: {name}')
  assert not offenders, offenders
  # The check sees what it must: a string, and both spellings of an import.
  probe = "x = 'head'\nfrom privjax.evaluate.evaluators import probe\nimport privjax.evaluate.evaluators.open_set\n"
  assert sorted(n for _, n in names_in(ast.parse(probe), names)) == ['head', 'open_set', 'probe']


def test_generic_rendering_of_an_evaluators_metrics():
  """An evaluator the renderer has never heard of: its metrics appear by label and unit, and its
  leak is the setting's strongest attack when it is the largest."""
  leak = results.percent(0.5, 0.05, label='identity top-1, mine', role='leak', secret='identity')
  other = results.percent(
      0.25, 0.01, label='identity top-1, linear', role='leak', secret='identity'
  )
  utility = results.percent(0.9, label='gender accuracy, head', role='utility')
  report = {
      'primary': 'gender',
      'secrets': ['identity'],
      'settings': [
          {
              'name': 'none/0',
              'transform': 'none',
              'noise_variance': 0.0,
              'uploaded_dims': 8,
              'baseline': True,
              'metrics': {
                  'mine/score': leak.to_dict(),
                  'attackers/identity/linear': other.to_dict(),
                  'head/accuracy': utility.to_dict(),
              },
          },
          {
              'name': 'none/1',
              'transform': 'none',
              'noise_variance': 1.0,
              'uploaded_dims': 8,
              'metrics': {'head/accuracy': utility.to_dict()},
          },
      ],
      'once': {'late/psnr': results.Metric(12.345, unit='dB', label='late: PSNR').to_dict()},
      'evaluators': {
          'mine': {'where': 'baseline'},
          'attackers': {'where': 'each'},
          'head': {'where': 'each'},
          'late': {'where': 'once'},
      },
  }
  glance = tables.glance_table(report)
  assert (
      '| none, σ² 0 | 8 | 90.0 % (gender accuracy, head) | 50.0 ± 5.0 % (identity top-1, mine) |'
      in glance
  )
  assert '| none, σ² 1 | 8 | 90.0 % (gender accuracy, head) | — |' in glance
  lines = tables.setting_sections(report)
  assert '## mine (at the baseline setting)' in lines
  assert '| | none, σ² 0 |' in lines  # only the settings it ran at
  assert '| identity top-1, mine | 50.0 ± 5.0 % |' in lines
  assert '| late: PSNR | 12.3 dB |' in tables.once_sections(report)


def _noisy_people(people, per_person, noise, seed, dims=16):
  """Features of `people` with a fixed centre each and heavy per-photo noise."""
  centres = np.random.default_rng(7).normal(size=(people, dims))
  y = np.repeat(np.arange(people), per_person)
  x = centres[y] + np.random.default_rng(seed).normal(scale=noise, size=(len(y), dims))
  return x.astype(np.float32), y


def test_accounts_pool_photos_of_one_person_and_report_the_k_with_enough_people(tmp_path):
  from privjax.evaluate.evaluators import accounts

  x_tr, y_tr = _noisy_people(40, 8, 1.5, seed=0)
  x_te, y_te = _noisy_people(40, 8, 1.5, seed=1)
  data = {
      'attacker_train': {'features': x_tr, 'identity': y_tr},
      'attacker_test': {'features': x_te, 'identity': y_te},
  }
  config = ml_collections.ConfigDict({'seed': 0, 'attacker_overrides': {}})
  ctx = make_ctx(tmp_path, config, {}, data)
  ctx.evaluator = 'accounts'
  out = accounts.run(ctx, baseline(ctx), accounts.Settings(ks=(1, 2, 4, 8, 16), min_people=30))
  top1 = {k: out[f'linear/k{k}'].value for k in (1, 2, 4, 8)}
  assert top1[1] < 80 and top1[8] > top1[1] + 10, top1  # pooling names people a photo cannot
  assert 'linear/k16' not in out  # nobody has 16 test photos
  leaks = {n: m for n, m in out.items() if m.role == 'leak'}
  assert list(leaks) == ['linear/k8'] and leaks['linear/k8'].uploads == 8
  records = ctx.details['accounts']['none/0']['linear']
  assert records['8']['num_people'] == 40 and records['8']['num_groups'] == 40
  assert records['2']['num_groups'] == 160
  # With too few people at every k > 1, no pooled figure is a leak.
  out = accounts.run(ctx, baseline(ctx), accounts.Settings(ks=(1, 2), min_people=50))
  assert not [m for m in out.values() if m.role == 'leak']


def test_repeated_uploads_average_the_noise_away(tmp_path):
  from privjax.evaluate.evaluators import repeated_upload

  x_tr, y_tr = _noisy_people(10, 20, 0.3, seed=0)
  x_te, y_te = _noisy_people(10, 10, 0.3, seed=1)
  data = {
      'attacker_train': {'features': x_tr, 'identity': y_tr},
      'attacker_test': {'features': x_te, 'identity': y_te},
  }
  config = ml_collections.ConfigDict({'seed': 0, 'attacker_overrides': {}})
  ctx = make_ctx(tmp_path, config, {}, data)
  settings = repeated_upload.Settings(ks=(1, 8))
  assert repeated_upload.run(ctx, baseline(ctx), settings) == {}  # no noise, nothing to average
  noisy = ctx.features.setting(deployed(), 9.0, baseline=False)
  # The mean of 8 uploads has a noise variance of 9 / 8.
  mean8 = repeated_upload.averaged(ctx, noisy, 'attacker_test', 8)
  assert np.var(mean8 - x_te) == pytest.approx(9.0 / 8, rel=0.1)
  out = repeated_upload.run(ctx, noisy, settings)
  assert out['k8'].value > out['k1'].value + 15, out
  assert out['k8'].role == 'leak' and out['k8'].uploads == 8 and out['k1'].role == ''


def test_the_face_recogniser_names_perfect_reconstructions_and_not_noise(tmp_path):
  from privjax.data import face_renderer

  faces = face_renderer.generate_faces(
      num_identities=4, images_per_identity=4, image_size=64, seed=0
  )
  images, labels = faces['image'].astype(np.float32) / 255.0, faces['identity']
  train, test = np.arange(16) % 4 < 2, np.arange(16) % 4 >= 2
  data = {
      'attacker_train': {'features': images[train], 'identity': labels[train]},
      'attacker_test': {'features': images[test], 'identity': labels[test]},
  }
  # Two photos a person to train on: one l2, no val split to choose it on.
  config = ml_collections.ConfigDict({'seed': 0, 'attacker_overrides': {'linear': {'l2': 1e-2}}})
  ctx = make_ctx(
      tmp_path, config, {'attacker_train': images[train], 'attacker_test': images[test]}, data
  )
  ctx.evaluator = 'reidentify'
  ctx.add_reconstructions('perfect', np.arange(8), images[test])
  rng = np.random.default_rng(0)
  ctx.add_reconstructions('noise', np.arange(8), rng.uniform(size=images[test].shape))
  settings = reidentify.Settings(ks=(1, 2), min_people=4)
  out = reidentify.run(ctx, baseline(ctx), settings)
  assert out['face/originals'].role == 'raw'
  assert out['face/perfect'].value == out['face/originals'].value  # the originals themselves
  assert out['face/perfect'].role == 'leak' and out['face/noise'].role == 'leak'
  assert out['face/noise'].value < out['face/perfect'].value
  assert out['face/perfect/k2'].uploads == 2  # two photos of each of 4 people pooled
  assert 'face/perfect/tar_at_far_0.01' in out


def test_the_bound_is_epsilon_of_the_clip_and_the_noise_and_infinite_without_noise(tmp_path):
  from privjax.evaluate.evaluators import dp_bound
  from privjax.privacy import dp

  x, y = _noisy_people(4, 10, 1.0, seed=0)
  ctx = make_ctx(tmp_path, ml_collections.ConfigDict({'seed': 0}), {}, {'test': {'features': x}})
  settings = dp_bound.Settings(uploads=(1, 8))
  noisy = ctx.features.setting(deployed(clip=2.0), 0.25, baseline=False)
  out = dp_bound.run(ctx, noisy, settings)
  assert out['mu'].value == pytest.approx(2 * 2.0 / 0.5)  # 2C / sigma
  assert out['epsilon_1'].value == pytest.approx(dp.epsilon_closed_form(8.0), rel=1e-4)
  assert out['epsilon_8'].uploads == 8 and out['epsilon_8'].role == 'guarantee'
  assert out['epsilon_8'].value == pytest.approx(dp.epsilon_closed_form(8.0, uploads=8), rel=1e-3)
  clean = dp_bound.run(ctx, ctx.features.setting(deployed(clip=2.0), 0.0, False), settings)
  assert clean['epsilon_1'].value == float('inf') and 'no noise' in clean['epsilon_1'].note
  unclipped = dp_bound.run(ctx, ctx.features.setting(deployed(), 0.25, False), settings)
  assert 'no clip' in unclipped['epsilon_1'].note


def test_the_deployed_clip_bounds_every_upload_before_the_noise(tmp_path):
  x, _ = _noisy_people(4, 10, 1.0, seed=0)
  x *= np.linspace(0.5, 3, len(x))[:, None].astype(np.float32)  # a range of norms
  ctx = make_ctx(tmp_path, ml_collections.ConfigDict({'seed': 0}), {}, {'test': {'features': x}})
  clip = float(np.median(np.linalg.norm(x, axis=1)))
  setting = ctx.features.setting(deployed(clip=clip), 4.0, False)
  clean = setting.clean('test')
  norms = np.linalg.norm(clean, axis=1)
  assert norms.max() <= clip * (1 + 1e-5) and norms.max() < np.linalg.norm(x, axis=1).max()
  short = np.linalg.norm(x, axis=1) <= clip
  np.testing.assert_array_equal(clean[short], x[short])  # rows under C are untouched
  noisy = setting.uploaded('test')
  assert np.var(noisy - clean) == pytest.approx(4.0, rel=0.2)  # the noise comes after the clip
  # Without noise there is nothing to bound: the features are uploaded unclipped.
  plain = ctx.features.setting(deployed(clip=clip), 0.0, False)
  assert plain.clip is None
  np.testing.assert_array_equal(plain.uploaded('test'), x)
