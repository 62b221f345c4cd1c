"""Defences as plug-ins: each one's loss or gradient on a hand-checkable case, the mechanism they
share (the train step, checkpoints, evaluation, export) and their one-line errors."""

import dataclasses
import json
import math
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from privjax import config as config_lib
from privjax import defences, errors, objectives
from privjax.defences import adversarial, bottleneck, disco, learned_noise, nopeek
from privjax.evaluate import features as features_lib
from privjax.train import checkpoint as ckpt_lib
from privjax.train import loop
from privjax.train import step as step_lib

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTEXT = defences.base.Context((2, 2, 1), (4, 4, 3), (('gender', 2), ('identity', 3)))


def _pair_batch(seed=0, pairs=8, size=64):
  rng = np.random.default_rng(seed)
  batch = {
      'image': rng.integers(0, 256, (pairs, 2, size, size, 3)).astype(np.uint8),
      'label': np.tile(np.array([[0, 0], [0, 1], [1, 1], [1, 0]], np.int32), (pairs // 4, 1)),
      'identity': rng.integers(0, 10, (pairs, 2)).astype(np.int32),
  }
  batch['same'] = (batch['label'][:, 0] == batch['label'][:, 1]).astype(np.float32)
  return batch


def test_registry_lists_every_module_and_parses_combinations():
  assert set(defences.names()) >= {'none', 'siamese', 'nopeek', 'adversarial', 'learned_noise'}
  assert defences.parse('siamese+adversarial') == ('siamese', 'adversarial')
  for bad, match in [
      ('bogus', "unknown defence 'bogus'; valid: "),
      ('simple', "unknown defence 'simple'; valid: "),
      ('siamese+siamese', 'names a defence twice'),
      ('none+nopeek', 'none cannot be combined'),
  ]:
    with pytest.raises(errors.DefenceError, match=match):
      defences.parse(bad)


def test_nothing_outside_the_defences_package_names_a_defence():
  """A new defence is one module plus its config section: the library never names one."""
  named = [n for n in defences.names() if n != 'none']
  pattern = re.compile(r"""['"](%s)['".+]""" % '|'.join(named))
  # The paper's pipeline names the paper's variants.
  jobs = {'experiments/reproduce.py', 'experiments/sweep.py'}
  offenders = []
  for path in (ROOT / 'privjax').rglob('*.py'):
    rel = path.relative_to(ROOT / 'privjax')
    if rel.parts[0] == 'defences' or str(rel) in jobs:
      continue
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if pattern.search(line):
        offenders.append(f'{rel}:{i}: {line.strip()}')
  assert not offenders, offenders


def test_siamese_term_is_weight_times_the_hand_computed_contrastive_loss():
  cfg = ml_collections.ConfigDict(
      dict(weight=0.5, margin=3.0, margin_mode='fixed', margin_scale=1.0, normalize=False)
  )
  siamese = defences.defence_class('siamese')(cfg, CONTEXT)
  # Two pairs of 4-dim features: a same pair at distance 1, a different pair at distance 2.
  f = jnp.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0]], jnp.float32)
  f = f.reshape(4, 2, 2, 1)
  term, metrics = siamese.loss(
      siamese.init_state(None), f, {'same': jnp.array([1.0, 0.0])}, None, None
  )
  # 0.5 * mean(1 * 1^2, (3 - 2)^2) = 0.5; times the weight.
  assert float(metrics['contrastive']) == pytest.approx(0.5)
  assert float(term) == pytest.approx(0.25)


def test_siamese_calibration_takes_scale_times_median_different_pair_distance():
  cfg = ml_collections.ConfigDict(
      dict(weight=1.0, margin=10.0, margin_mode='calibrated', margin_scale=2.0, normalize=False)
  )
  siamese = defences.defence_class('siamese')(cfg, CONTEXT)
  outputs = [np.array([[1.0, 5.0, 7.0], [1.0, 0.0, 0.0]]), np.array([[3.0, 9.0], [0.0, 1.0]])]
  # Different-pair distances 5, 7, 3 → median 5, times 2.
  assert float(siamese.calibrate(siamese.init_state(None), outputs)['margin']) == 10.0


def _dcor_reference(x, y):
  """Distance correlation with explicit loops (Székely et al. 2007), float64."""
  n = len(x)
  a = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])
  b = np.array([[np.linalg.norm(y[i] - y[j]) for j in range(n)] for i in range(n)])
  centre = lambda m: m - m.mean(0) - m.mean(1)[:, None] + m.mean()
  a, b = centre(a), centre(b)
  return math.sqrt((a * b).mean() / math.sqrt((a * a).mean() * (b * b).mean()))


def test_nopeek_distance_correlation_matches_a_slow_reference():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(12, 5))
  z = np.tanh(x @ rng.normal(size=(5, 3))) + 0.3 * rng.normal(size=(12, 3))
  assert float(nopeek.distance_correlation(x, z)) == pytest.approx(_dcor_reference(x, z), abs=2e-4)
  # An affine map of the input (rotation and scale) is perfectly correlated.
  q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
  assert float(nopeek.distance_correlation(x, 3 * x @ q + 1)) == pytest.approx(1.0, abs=1e-3)
  # Independent samples: small (the sample statistic is biased upwards at n = 200).
  big = rng.normal(size=(200, 4)), rng.normal(size=(200, 4))
  assert float(nopeek.distance_correlation(*big)) < 0.35


def test_nopeek_gradient_is_finite_with_repeated_rows_and_lowers_dcor():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)
  x = x.at[1].set(x[0])  # two identical images: a zero distance
  z = x[:, :3] * 2.0
  grad = jax.grad(lambda z: nopeek.distance_correlation(x, z))(z)
  assert np.isfinite(np.asarray(grad)).all()
  step = z - 0.5 * grad / jnp.linalg.norm(grad)
  assert nopeek.distance_correlation(x, step) < nopeek.distance_correlation(x, z)


def test_adversarial_confusion_is_log_k_at_uniform_and_the_proxy_learns():
  assert float(adversarial.confusion_loss(jnp.zeros((4, 7)))) == pytest.approx(math.log(7))
  # Logits (0, log 3): p = (1/4, 3/4); CE to uniform = -(log 1/4 + log 3/4) / 2.
  expected = -(math.log(0.25) + math.log(0.75)) / 2
  assert float(adversarial.confusion_loss(jnp.array([[0.0, math.log(3.0)]]))) == pytest.approx(
      expected, rel=1e-6
  )
  cfg = ml_collections.ConfigDict(
      dict(
          weight=1.0,
          label='identity',
          proxy_hidden=16,
          proxy_layers=1,
          proxy_lr=1e-2,
          proxy_steps=5,
      )
  )
  adv = defences.defence_class('adversarial')(cfg, CONTEXT)
  state = adv.init_state(jax.random.key(0))
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 8)
  centres = rng.normal(size=(3, 4)) * 3
  z = jnp.asarray((centres[y] + 0.1 * rng.normal(size=(24, 4))).reshape(24, 2, 2, 1), jnp.float32)
  batch = {'identity': jnp.asarray(y)}
  _, before = adv.loss(state, z, batch, None, None)
  for _ in range(10):
    state, m = adv.update(state, z, batch, None)
  _, after = adv.loss(state, z, batch, None, None)
  assert float(before['proxy_accuracy']) < 0.9 and float(after['proxy_accuracy']) == 1.0
  # The extractor's term is minimised by features the proxy cannot separate: its gradient
  # with respect to z, followed, makes the proxy less sure (confusion moves towards log K).
  term = lambda z: adv.loss(state, z, batch, None, None)[0]
  z2 = z - 0.1 * jax.grad(term)(z)
  assert float(term(z2)) < float(term(z))


def test_learned_noise_is_relative_to_the_features_and_rewarded_by_its_term():
  layer = learned_noise.LearnedNoise((2, 2, 1), init_scale=0.5)
  z = jnp.ones((20000, 2, 2, 1)) * 3.0  # rms 3
  noisy = layer(z, rng=jax.random.key(0))
  assert float(jnp.std(noisy - z)) == pytest.approx(0.5 * 3.0, rel=0.02)
  assert float(jnp.mean(noisy - z)) == pytest.approx(0.0, abs=0.03)
  # Scaling the features scales the noise: the extractor cannot drown it.
  assert np.allclose(layer(10 * z, rng=jax.random.key(0)) - 10 * z, 10 * (noisy - z), atol=1e-4)
  with pytest.raises(ValueError, match='call it with rng'):
    layer(z)
  cfg = ml_collections.ConfigDict(dict(weight=0.2, init_scale=0.5, lr=1e-2))
  defence = defences.defence_class('learned_noise')(cfg, CONTEXT)
  params = {'extractor': {learned_noise.LAYER: {'log_sigma': jnp.log(jnp.full((2, 2, 1), 0.5))}}}
  term, metrics = defence.loss({}, None, None, None, params)
  assert float(term) == pytest.approx(-0.2 * math.log(0.5))
  assert float(metrics['noise_scale']) == pytest.approx(0.5)
  grad = jax.grad(lambda p: defence.loss({}, None, None, None, p)[0])(params)
  np.testing.assert_allclose(
      grad['extractor'][learned_noise.LAYER]['log_sigma'], np.full((2, 2, 1), -0.2 / 4), rtol=1e-6
  )


def test_bottleneck_kl_matches_a_hand_computed_value_and_its_samples_have_its_moments():
  # Per feature 0.5 (mu^2 + var - 1 - log var): mu (1, 0), var (1, 4) -> 0.5 + 0.5 (3 - log 4).
  mean = jnp.array([[1.0, 0.0]])
  logvar = jnp.log(jnp.array([[1.0, 4.0]]))
  expected = 0.5 + 0.5 * (3.0 - math.log(4.0))
  np.testing.assert_allclose(bottleneck.gaussian_kl(mean, logvar), [expected], rtol=1e-6)
  # The layer: mu = x' W_mu + b_mu, log var = x' W_v + b_v over the last axis, x' = x / rms(x);
  # the defence's term is beta x the batch's mean KL.
  layer = bottleneck.Bottleneck(2, init_logvar=0.0)
  layer.mean_kernel[...] = jnp.array([[1.0, 0.0], [0.0, 0.0]])
  layer.logvar_bias[...] = jnp.log(jnp.array([1.0, 4.0]))
  # [2, 1, 1, 2]: rms 1 and 7 / sqrt(2), so x' = (1, 1) and (0, sqrt(2)): mu (1, 0) and (0, 0).
  x = jnp.array([[[[1.0, 1.0]]], [[[0.0, 7.0]]]])
  kl_second = 0.5 * (3.0 - math.log(4.0))
  np.testing.assert_allclose(layer.report(x)['kl'], [expected, kl_second], rtol=1e-6)
  np.testing.assert_allclose(layer.report(3.0 * x)['kl'], [expected, kl_second], rtol=1e-6)
  cfg = ml_collections.ConfigDict(bottleneck.Settings(beta=0.5).__dict__)
  defence = defences.defence_class('bottleneck')(cfg, CONTEXT)
  term, metrics = defence.layer_loss({}, {bottleneck.LAYER: layer.report(x)}, {})
  np.testing.assert_allclose(term, 0.5 * (expected + kl_second) / 2, rtol=1e-6)
  # The sample is drawn in rms units and scaled back: features 3x larger, a 3x larger sample.
  z = layer(jnp.tile(3.0 * x[:1], (20000, 1, 1, 1)), rng=jax.random.key(0)).reshape(-1, 2)
  np.testing.assert_allclose(z.mean(0), [3.0, 0.0], atol=0.15)
  np.testing.assert_allclose(z.var(0), [9.0, 36.0], rtol=0.05)
  with pytest.raises(ValueError, match='rng='):
    layer(x)


def test_disco_mask_keeps_the_top_k_channels_and_learns_through_the_soft_mask():
  scores = jnp.array([[0.3, -1.0, 2.0, 0.1], [5.0, 4.0, -3.0, 4.5]])
  mask = disco.channel_mask(scores, 2)
  np.testing.assert_array_equal(mask, [[1, 0, 1, 0], [1, 0, 0, 1]])
  # Straight-through: the gradient is sigmoid'(score - threshold), the threshold halfway between
  # the 2nd and 3rd score ((0.3 + 0.1) / 2 and (4.5 + 4) / 2).
  grad = jax.grad(lambda s: disco.channel_mask(s, 2).sum())(scores)
  sig = lambda t: jax.nn.sigmoid(t) * (1 - jax.nn.sigmoid(t))  # noqa: E731
  np.testing.assert_allclose(grad, sig(scores - jnp.array([[0.2], [4.25]])), rtol=1e-6)
  np.testing.assert_array_equal(disco.channel_mask(scores, 4), np.ones((2, 4)))


def test_disco_pruner_ships_in_the_exported_extractor_with_exactly_keep_times_c_channels(tmp_path):
  from privjax import export

  config = ml_collections.ConfigDict(
      {
          'model': {'arch': 'vgg_mini', 'cut': 'conv4_2', 'dtype': 'float32'},
          'input': {'mean': (0.5,) * 3, 'std': (0.25,) * 3, 'channel_order': 'RGB'},
          'defence': {'name': 'disco', 'disco': disco.Settings(keep=0.25).__dict__},
      }
  )
  context = defences.context_for(config, (('gender', 2), ('identity', 5)))
  model, defence = defences.model_from_config(config, 2, context, rngs=nnx.Rngs(0))
  channels = context.feature_shape[-1]
  assert defence.device_cost()['params'] == channels * (channels + 1)
  # A trained pruner's scores are not the channels' means: a random one chooses differently.
  pruner = getattr(model.extractor, disco.LAYER)
  pruner.kernel[...] = jax.random.normal(jax.random.key(1), (channels, channels))
  manifest = export.export_extractor(model, str(tmp_path))
  assert [i['name'] for i in manifest['inputs']] == ['pixels']  # deterministic: no key
  x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
  z = np.asarray(export.load_exported(str(tmp_path))(x))
  # Reference in numpy: the cut features before the pruner, its scores, each image's top k.
  cut = x
  for name in model.extractor.names[:-1]:
    cut = getattr(model.extractor, name)(cut)
  cut = np.asarray(cut, np.float64)
  scores = cut.mean(axis=(1, 2)) @ np.asarray(pruner.kernel[...], np.float64)
  kept = np.zeros((3, channels), bool)
  np.put_along_axis(kept, np.argsort(-scores, axis=1)[:, : channels // 4], True, axis=1)
  assert (kept.sum(axis=1) == channels // 4).all()
  assert len({tuple(k) for k in kept}) > 1  # chosen per image
  np.testing.assert_allclose(z, cut * kept[:, None, None, :], rtol=1e-4, atol=1e-5)
  assert (z[np.broadcast_to(~kept[:, None, None, :], z.shape)] == 0).all()


def _model_with(name, section, labels=(('gender', 2),)):
  """(model, defence) of a random vgg_mini cut at conv4_2 with the defence `name` (its section)."""
  config = ml_collections.ConfigDict(
      {
          'model': {'arch': 'vgg_mini', 'cut': 'conv4_2', 'dtype': 'float32'},
          'input': {'mean': (0.5,) * 3, 'std': (0.25,) * 3, 'channel_order': 'RGB'},
          'defence': {'name': name, name: section},
      }
  )
  context = defences.context_for(config, labels)
  return defences.model_from_config(config, 2, context, rngs=nnx.Rngs(0))


def _two_draws_exported(model, tmp_path):
  """Pixels x and the exported extractor's uploads of them under keys 0, 1 and 0 again; the
  artifact takes a key."""
  from privjax import export

  manifest = export.export_extractor(model, str(tmp_path))
  assert [i['name'] for i in manifest['inputs']] == ['pixels', 'key']
  extractor = export.load_exported(str(tmp_path))
  x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
  keys = [np.array([0, k], np.uint32) for k in range(2)]
  a, b, a2 = (np.asarray(extractor(x, k)) for k in (keys[0], keys[1], keys[0]))
  return x, a, b, a2


def test_bottleneck_ships_in_the_exported_extractor_and_the_key_decides_the_draw(tmp_path):
  model, _ = _model_with('bottleneck', bottleneck.Settings().__dict__)
  x, a, b, a2 = _two_draws_exported(model, tmp_path)
  np.testing.assert_array_equal(a, a2)
  # Two draws differ by rms * sigma * (eps1 - eps2): std sqrt(2) exp(init_logvar / 2) x rms.
  clean = x
  for name in model.extractor.names[:-1]:
    clean = getattr(model.extractor, name)(clean)
  rms = np.sqrt(np.mean(np.asarray(clean).reshape(2, -1) ** 2, axis=1))
  ratio = np.std((a - b).reshape(2, -1), axis=1) / rms
  np.testing.assert_allclose(ratio, math.sqrt(2) * math.exp(-2.0), rtol=0.05)


def test_loading_a_training_config_imports_no_jax():
  import subprocess
  import sys

  code = (
      'import sys; from privjax import config as c; '
      "c.config_module('configs/default.py').get_config('siamese+bottleneck,calibrated'); "
      "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')))"
  )
  out = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, check=True
  )
  assert out.stdout.strip() == '[]', out.stdout


def test_each_defence_declares_its_config_section_in_its_module():
  from privjax import plugins

  config = config_lib.config_module(str(ROOT / 'configs' / 'default.py')).get_config('')
  for name in defences.names():
    module = __import__(f'privjax.defences.{name}', fromlist=['Settings'])
    declared = plugins.declared_defaults(plugins.module_path('privjax.defences', name))
    assert declared == dataclasses.asdict(module.Settings()), name
    assert config.defence[name].to_dict() == declared, name
    assert declared['strength'] == module.DEFENCE.strength, name


def test_without_a_defence_the_gradient_is_the_cross_entropy_gradient(tiny_config, make_step):
  config = tiny_config('none,tiny')
  setup = make_step(config)
  batch = _pair_batch()
  # With SGD at rate 1 the update is minus the gradient the step computed.
  sgd = optax.sgd(1.0)
  fn = step_lib.make_train_step(setup.graphdef, sgd, setup.defence, seed=config.seed)
  params = setup.state['params']
  state = step_lib.init_state(params, sgd, setup.state['defence'])
  new, _ = jax.jit(fn)(state, batch)
  step_grad = jax.tree.map(lambda a, b: a - b, params, new['params'])

  def ce_only(p):
    model = nnx.merge(setup.graphdef, p)
    images = batch['image'].reshape((-1, 64, 64, 3))
    return 2.0 * objectives.cross_entropy(model(images), batch['label'].reshape(-1))

  reference = jax.grad(ce_only)(params)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6),
      step_grad['extractor'],
      reference['extractor'],
  )


def _pair_distance_ratio(setup, state, batch):
  model = nnx.merge(setup.graphdef, state['params'])
  f = np.asarray(model.extractor(batch['image'].reshape((-1, 64, 64, 3)))).reshape(8, 2, -1)
  d = np.linalg.norm(f[:, 0] - f[:, 1], axis=1)
  return d[batch['same'] == 1].mean() / d[batch['same'] == 0].mean()


def test_siamese_steps_pull_same_label_pairs_together_more_than_none(tiny_config, make_step):
  """The paper's mechanism: the same steps with the contrastive term lower the same/different
  distance ratio far more than without it (fixed seed, a large weight: far from noise)."""
  batch = _pair_batch(seed=3)
  ratios = {}
  for arg in ('none,tiny', 'siamese,tiny'):
    config = tiny_config(arg)
    config.optimizer.lr = 1e-3
    config.defence.siamese.weight = 1.0
    config.defence.siamese.margin = 20.0
    setup = make_step(config)
    step, state = jax.jit(setup.step), setup.state
    start = _pair_distance_ratio(setup, state, batch)
    for _ in range(15):
      state, _ = step(state, batch)
    ratios[arg] = _pair_distance_ratio(setup, state, batch) / start
  assert ratios['siamese,tiny'] < 0.6 * ratios['none,tiny'], ratios


@pytest.mark.parametrize(
    'name',
    [
        'nopeek',
        'adversarial',
        'learned_noise',
        'siamese+adversarial',
        'disco',
        'siamese+bottleneck',
    ],
)
def test_every_defence_trains_resumes_and_evaluates(tiny_config, tmp_path, name):
  config = tiny_config(f'{name},tiny')
  workdir = str(tmp_path / 'run')
  result = loop.train_and_evaluate(config, workdir)
  assert result['step'] == config.total_steps and math.isfinite(result['train_loss'])
  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  expected = {
      'nopeek': 'dcor',
      'adversarial': 'proxy_accuracy',
      'learned_noise': 'noise_scale',
      'disco': 'pruner_proxy_accuracy',
      'bottleneck': 'kl',
      'siamese': 'contrastive',
  }
  for part in name.split('+'):
    if part in expected:
      assert any(expected[part] in l for l in lines), (part, lines[-1])
  # The defence's state and device layers come back with the run.
  step, params, meta, saved = ckpt_lib.restore_run(workdir)
  assert saved['defence']['name'] == name and meta['step'] == step
  if 'adversarial' in name or 'disco' in name:
    assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(step), 'defence'))
  run = features_lib.load_run(workdir)
  layers = {
      'disco': disco.LAYER,
      'bottleneck': bottleneck.LAYER,
      'learned_noise': learned_noise.LAYER,
  }
  for part in name.split('+'):
    if part in layers:  # restored with the trained values, not a fresh layer's
      layer = getattr(run.model.extractor, layers[part])
      context = defences.context_for(config, (('gender', 2), ('identity', 10)))
      fresh = dict(defences.from_config(config.defence, context).device_layers(nnx.Rngs(0)))
      trained = params['extractor'][layers[part]]
      for key, value in trained.items():
        np.testing.assert_array_equal(np.asarray(getattr(layer, key)[...]), np.asarray(value))
      assert any(
          not np.array_equal(np.asarray(v), np.asarray(getattr(fresh[layers[part]], k)[...]))
          for k, v in trained.items()
      ), part
  if name in ('learned_noise', 'siamese+bottleneck'):
    assert run.model.extractor.samples
    # One draw per image and split, the same on every extraction.
    a = features_lib.extract(run, 'test', cache=False)['features']
    b = features_lib.extract(run, 'test', cache=False)['features']
    np.testing.assert_array_equal(a, b)
  # Resuming the finished run with the same config does not fail; with another defence, it does.
  other = tiny_config('siamese,tiny' if name != 'siamese+adversarial' else 'nopeek,tiny')
  with pytest.raises(errors.RunError, match='different config'):
    loop.train_and_evaluate(other, workdir)


@pytest.mark.parametrize(
    'arg,key,value,match',
    [
        ('none,tiny', 'defence.name', 'bogus', "unknown defence 'bogus'"),
        (
            'adversarial,tiny',
            'defence.adversarial.label',
            'age',
            "defence adversarial needs label 'age'",
        ),
        ('nopeek,tiny', 'defence.nopeek.weight', -1.0, 'defence.nopeek.weight must be >= 0'),
        ('siamese,tiny', 'defence.siamese.margin_mode', 'auto', "margin_mode='auto' is not valid"),
        ('disco,tiny', 'defence.disco.keep', 1.5, r'defence.disco.keep must be in \(0, 1\]'),
        ('disco,tiny', 'defence.disco.keep', 0.0, r'defence.disco.keep must be in \(0, 1\]'),
        ('disco,tiny', 'defence.disco.keep', float('nan'), r'defence.disco.keep must be in'),
        ('bottleneck,tiny', 'defence.bottleneck.beta', -0.1, 'beta must be a finite number > 0'),
        ('bottleneck,tiny', 'defence.bottleneck.beta', float('inf'), 'beta must be a finite'),
        ('siamese+bottleneck,tiny', 'defence.bottleneck.beta', 0.0, 'beta must be a finite'),
    ],
)
def test_bad_defence_requests_fail_in_one_line_before_writing(
    tiny_config, tmp_path, arg, key, value, match
):
  config = tiny_config(arg)
  *parents, leaf = key.split('.')
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(errors.ConfigError, match=match) as e:
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert '\n' not in str(e.value)
  assert not os.path.exists(tmp_path / 'run')


def test_a_misspelt_defence_key_is_refused_by_the_command_line(tfds_dir, tmp_path):
  import subprocess
  import sys

  proc = subprocess.run(
      [
          sys.executable,
          str(ROOT / 'train.py'),
          '--config',
          'configs/default.py:nopeek,tiny',
          f'--config.dataset.data_dir={tfds_dir}',
          '--config.defence.nopeek.wieght=1',
          '--workdir',
          str(tmp_path / 'run'),
      ],
      capture_output=True,
      text=True,
      cwd=ROOT,
      timeout=300,
  )
  assert proc.returncode != 0 and 'wieght' in proc.stderr and 'Traceback' not in proc.stderr
  assert not (tmp_path / 'run').exists()


def test_learned_noise_ships_in_the_exported_extractor(tmp_path):
  model, _ = _model_with('learned_noise', {'weight': 0.1, 'init_scale': 0.5, 'lr': 1e-2})
  x, a, b, a2 = _two_draws_exported(model, tmp_path)
  np.testing.assert_array_equal(a, a2)  # the key decides the draw
  assert not np.allclose(a, b)
  # The noise is the layer's: the artifact minus the noiseless extractor has the layer's scale.
  clean = x
  for name in model.extractor.names:
    if name != learned_noise.LAYER:
      clean = getattr(model.extractor, name)(clean)
  clean = np.asarray(clean)
  rms = np.sqrt(np.mean(clean.reshape(2, -1) ** 2, axis=1))
  ratio = np.std((a - clean).reshape(2, -1), axis=1) / rms
  np.testing.assert_allclose(ratio, 0.5, rtol=0.05)
