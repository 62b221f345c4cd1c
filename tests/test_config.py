"""privjax.config.validate, generated from its declared table (`config.KEYS`).

For every enumerated key a bogus value, and for every range the values just outside it, an
infinity, NaN and a value of the wrong type, are refused in one line that names the key; every key
of every training config is in the table or in `config.UNCHECKED` (so a new key cannot skip
validation unnoticed), and every entry of either names a key that exists.
"""

import math
import os

import ml_collections
import pytest

from privjax import config as config_lib
from privjax.errors import ConfigError
from privjax.train import step as step_lib

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every training config file, with the arguments that make each of its shapes.
TRAINING_CONFIGS = (
    'configs/default.py:tiny',
    'configs/default.py:siamese+adversarial',
    'configs/image_folder.py:csv=faces.csv',
    'configs/lfw_photos.py:csv=faces.csv',
    'configs/celeba_mini.py',
    'configs/lfw_mini.py',
    'configs/paper/vgg16.py:dataset=celeba,cut=conv5_3',
    'configs/paper/vgg16.py:dataset=image_folder,csv=faces.csv',
)


def _load(spec):
  path, _, arg = spec.partition(':')
  return config_lib.config_module(os.path.join(ROOT, path)).get_config(arg)


def _leaves(d, prefix=''):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _leaves(v, f'{prefix}{k}.')
    else:
      yield f'{prefix}{k}'


def _owned_by_a_defence(key):  # defence.<name>.*: privjax.defences.check_config's
  parts = key.split('.')
  return parts[0] == 'defence' and len(parts) > 2


def _unchecked(key):
  return any(key == u or key.startswith(u + '.') for u in config_lib.UNCHECKED)


def _bad_values(allowed):
  """Values that `allowed` (a Choice or a Range) must refuse, derived from its declaration."""
  if isinstance(allowed, config_lib.Choice):
    choices = allowed.allowed()
    bad = ['bogus', 1, None] + ([] if '' in choices else [''])
    if True in choices:
      bad += ['True', 0]  # a string, and an int that equals False
    return bad
  bad = [math.nan, math.inf, -math.inf, 'bogus', True]
  if allowed.integer:
    bad.append((allowed.low or 0) + 1.5)  # in range, but not an integer
  if allowed.low is not None:
    bad.append(allowed.low if allowed.low_open else allowed.low - 1)
  if allowed.high is not None:
    bad.append(allowed.high if allowed.high_open else allowed.high + 1)
  return bad


CASES = [(key, value) for key, allowed in config_lib.KEYS.items() for value in _bad_values(allowed)]


def _with(key, value):
  """The tiny default config with `key` set to `value`, built from a dict: ConfigDict's own type
  checks stay out of the way (a restored run's config has none either)."""
  d = _load('configs/default.py:tiny').to_dict()
  *parents, leaf = key.split('.')
  node = d
  for part in parents:
    node = node[part]
  if isinstance(node[leaf], tuple) and not isinstance(value, tuple):
    value = (value,) + tuple(node[leaf][1:])  # one bad element among good ones
  node[leaf] = value
  return ml_collections.ConfigDict(d)


def test_the_default_and_every_training_config_pass():
  for spec in TRAINING_CONFIGS:
    config_lib.validate(_load(spec))


@pytest.mark.parametrize('key, value', CASES, ids=[f'{k}={v!r}' for k, v in CASES])
def test_every_declared_key_refuses_what_it_does_not_allow(key, value):
  with pytest.raises(ConfigError) as e:
    config_lib.validate(_with(key, value))
  message = str(e.value)
  assert '\n' not in message and message.startswith(key), message


@pytest.mark.parametrize('key', list(config_lib.KEYS))
def test_every_declared_key_accepts_its_bounds_and_choices(key):
  allowed = config_lib.KEYS[key]
  if isinstance(allowed, config_lib.Choice):
    good = list(allowed.allowed())
  else:
    low, high = allowed.low, allowed.high
    inside = (low + high) / 2 if high is not None else (low or 0) + 1
    good = [inside] + [
        bound
        for bound, is_open in ((low, allowed.low_open), (high, allowed.high_open))
        if bound is not None and not is_open
    ]
    if allowed.each:
      good = [(v, v, v) for v in good]
  for value in good:
    allowed.check(key, value)


def test_every_key_of_every_training_config_is_declared():
  undeclared = set()
  for spec in TRAINING_CONFIGS:
    for key in _leaves(_load(spec).to_dict()):
      if key not in config_lib.KEYS and not _unchecked(key) and not _owned_by_a_defence(key):
        undeclared.add(key)
  assert not undeclared, f'add to config.KEYS (or UNCHECKED, saying who checks): {undeclared}'


def test_every_declared_key_exists():
  keys = {k for spec in TRAINING_CONFIGS for k in _leaves(_load(spec).to_dict())}
  for declared in list(config_lib.KEYS) + list(config_lib.UNCHECKED):
    assert any(k == declared or k.startswith(declared + '.') for k in keys), declared


@pytest.mark.parametrize(
    'changes, match',
    [
        (
            {'optimizer.schedule': 'cosine'},
            r"optimizer.schedule='cosine' needs optimizer.decay_steps .* > warmup_steps=0, got 0",
        ),
        (
            {
                'optimizer.schedule': 'cosine',
                'optimizer.warmup_steps': 5,
                'optimizer.decay_steps': 5,
            },
            r'> warmup_steps=5, got 5',
        ),
        (
            {'optimizer.warmup_steps': 3},
            r"optimizer.warmup_steps=3 has no effect with optimizer.schedule='constant'",
        ),
        ({'model.image_size': 32}, 'model.image_size=32 but vgg_mini takes 64x64'),
        ({'input.std': (0.5, 0.5)}, r'input.std must have 3 values'),
        ({'dataset.secret': 'gender'}, "dataset.primary and dataset.secret are both 'gender'"),
    ],
)
def test_what_keys_say_together(changes, match):
  config = _load('configs/default.py:tiny')
  for key, value in changes.items():
    section, _, leaf = key.rpartition('.')
    config[section][leaf] = value
  with pytest.raises(ConfigError, match=match):
    config_lib.validate(config)


def test_a_cosine_schedule_decays_over_its_steps():
  config = _load('configs/default.py:tiny')
  config.optimizer.update(schedule='cosine', warmup_steps=2, decay_steps=10)
  config_lib.validate(config)
  rate = step_lib.learning_rate(config.optimizer, 1.0)
  # optax: linear warm-up from 0 over 2 steps, then 0.5 (1 + cos(pi t / 8)) over the other 8.
  for s, want in ((0, 0.0), (1, 0.5), (2, 1.0), (6, 0.5), (10, 0.0)):
    assert float(rate(s)) == pytest.approx(want, abs=1e-6), s


@pytest.mark.parametrize('schedule, decay', [('bogus', 10), ('cosine', 0)])
def test_the_optimizer_refuses_what_validate_refuses(schedule, decay):
  opt = ml_collections.ConfigDict(
      dict(schedule=schedule, warmup_steps=0, decay_steps=decay, lr=1e-3)
  )
  with pytest.raises(ConfigError, match='optimizer.schedule'):
    step_lib.learning_rate(opt, 1e-3)


EVAL_CONFIGS = sorted(
    f'configs/eval/{name}'
    for name in os.listdir(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs/eval'))
    if name.endswith('.py') and name != '__init__.py'
)


@pytest.mark.parametrize('spec', EVAL_CONFIGS)
def test_every_eval_config_loads_with_known_evaluators_and_their_sections(spec):
  """A config a results page names (lfw_attacks, lfw_accounts, ...) must load as it is written:
  every evaluator it runs is a built-in one with its settings section."""
  from privjax import config_args
  from privjax.evaluate.evaluators import common

  config = config_args.load(os.path.join(os.path.dirname(os.path.dirname(__file__)), spec))
  assert config.evaluators and set(config.evaluators) <= set(common.available())
  for name in config.evaluators:
    assert name in config, f'{spec}: no section for {name}'
