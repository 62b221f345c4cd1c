"""The paper configs resolve and validate for every cut, defence and data set; VGG-16 trains at 224 on
CPU; the sweep runs the pipeline once per cut."""

import os

import chex
import jax
import numpy as np
import pytest
from flax import nnx

from privjax import config as config_lib
from privjax import errors, models
from privjax.experiments import reproduce, sweep
from privjax.models import pretrained
from privjax.train import step as step_lib

pytestmark = pytest.mark.unit

ROOT = os.path.join(os.path.dirname(__file__), '..')
PAPER = os.path.join(ROOT, 'configs', 'paper', 'vgg16.py')
PAPER_EVAL = os.path.join(ROOT, 'configs', 'paper', 'eval.py')


def _module(path):
  module = config_lib.config_module(path)
  return module


@pytest.fixture(scope='module')
def paper():
  return _module(PAPER)


@pytest.mark.parametrize(
    'dataset,builder',
    [('celeba', 'celeba_faces'), ('lfw', 'lfw_faces'), ('image_folder', 'image_folder')],
)
@pytest.mark.parametrize('defence', ['none', 'siamese'])
def test_every_cut_and_defence_resolves_and_validates(paper, dataset, builder, defence):
  for cut in paper.CUTS:
    for weights, suffix in (('imagenet', 'imagenet'), ('keras', '.h5'), ('torchvision', '.pth')):
      c = paper.get_config(f'dataset={dataset},cut={cut},{defence},weights={weights}')
      config_lib.validate(c)
      resolved = c.to_dict()  # references (builder_kwargs.image_size) resolve
      assert (c.defence.name, c.model.arch, c.model.cut, c.model.image_size) == (
          defence,
          'vgg16',
          cut,
          224,
      )
      assert resolved['dataset']['builder_kwargs']['image_size'] == 224
      assert (c.dataset.name, c.dataset.primary, c.dataset.secret) == (
          builder,
          'gender',
          'identity',
      )
      assert c.model.pretrained.endswith(suffix)
      assert pretrained.source_for(c.model.pretrained) == weights
      norm = pretrained.normalization_for(weights)
      assert (tuple(c.input.mean), tuple(c.input.std), c.input.channel_order) == (
          norm['mean'],
          norm['std'],
          norm['channel_order'],
      )
      assert (c.batch_size, c.optimizer.lr, c.optimizer.head_lr_mult) == (10, 1e-4, 10.0)
      assert c.defence.siamese.margin == 10.0
      assert c.defence.siamese.weight == (0.001 if cut == 'conv5_1' else 0.01)
      assert c.total_steps == 45000


def test_the_installed_imagenet_weights_are_the_default(paper):
  c = paper.get_config('dataset=lfw')
  assert c.model.pretrained == 'imagenet'
  assert (tuple(c.input.mean), tuple(c.input.std)) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
  assert paper.get_config('dataset=lfw,pretrained=imagenet').model.pretrained == 'imagenet'


def test_defence_words_as_reproduce_passes_them(paper):
  calibrated = paper.get_config('siamese,calibrated,dataset=lfw')
  assert calibrated.defence.siamese.margin_mode == 'calibrated'
  assert paper.get_config('siamese,cut=fc6').defence.name == 'siamese'
  image_folder = paper.get_config('none,dataset=image_folder,csv=/data/faces.csv')
  assert image_folder.dataset.builder_kwargs.csv == '/data/faces.csv'
  assert image_folder.defence.name == 'none'


def test_arguments_for_what_the_sweep_cannot_override(paper):
  c = paper.get_config('dataset=lfw,manual_dir=/data/lfw,pretrained=/w/vgg16.pth,steps=7')
  assert (c.dataset.manual_dir, c.model.pretrained, c.total_steps) == (
      '/data/lfw',
      '/w/vgg16.pth',
      7,
  )
  assert c.input.channel_order == 'RGB'  # the torchvision file's normalisation
  config_lib.validate(c)


@pytest.mark.parametrize(
    'arg,match',
    [
        ('cut=conv3_1', "cut='conv3_1' is not valid; choose one of: conv4_3"),
        ('dataset=imagenet', "dataset='imagenet' is not valid"),
        ('weights=caffe', "weights='caffe' is not valid"),
        ('none,siamese', 'name more than one defence'),
        ('mode=siamese', r"unknown config argument\(s\) \['mode'\]"),
        ('simple', r"unknown config argument\(s\) \['simple'\]"),
        ('lr=1', r"unknown config argument\(s\) \['lr'\]"),
        ('tiny', r"unknown config argument\(s\) \['tiny'\]"),
        ('dataset=lfw,csv=x.csv', 'csv=... is an argument of dataset=image_folder'),
        ('dataset=image_folder,manual_dir=/d', 'manual_dir=... is an argument of dataset=celeba'),
        (
            'pretrained=w.h5,weights=torchvision',
            'pretrained=w.h5 is a keras file but ' 'weights=torchvision',
        ),
        ('pretrained=w.onnx', "unknown weight file type '.onnx'"),
        ('steps=0', "steps='0' must be a positive integer"),
    ],
)
def test_bad_arguments_say_what_is_valid(paper, arg, match):
  with pytest.raises(ValueError, match=match):
    paper.get_config(arg)


def test_sweep_cuts_are_the_configs_and_valid_vgg16_cuts(paper):
  assert sweep.PAPER_CUTS == paper.CUTS
  arch = models.get_architecture('vgg16')
  assert all(cut in arch.valid_cuts for cut in paper.CUTS)


def test_paper_eval_config_has_the_authors_pca_and_noise_levels():
  ec = _module(PAPER_EVAL).get_config()
  assert ec.transforms == ('none', 'pca:4')
  assert ec.noise_variances == (0.0, 1e-4, 0.01, 0.1, 0.25, 0.5, 0.8, 1.0, 2.0, 4.0, 9.0)
  assert 'identity' in ec.secrets
  assert len(_module(PAPER_EVAL).get_config('fast').noise_variances) < len(ec.noise_variances)


def test_sweep_runs_the_pipeline_once_per_cut(tmp_path, monkeypatch):
  calls = []

  def fake_pipeline(
      workdir, config_path, extra_args, eval_config, variants, data_dir=None, overrides=None
  ):
    calls.append((workdir, config_path, extra_args, tuple(variants), data_dir, overrides))
    os.makedirs(workdir, exist_ok=True)
    return f'| table for {os.path.basename(workdir)} |\n'

  monkeypatch.setattr(reproduce, 'run_pipeline', fake_pipeline)
  text = sweep.run_sweep(
      str(tmp_path),
      'configs/paper/vgg16.py:dataset=lfw',
      ['conv4_3', 'fc6'],
      None,
      ('none', 'siamese'),
      data_dir='/tfds',
      extra_args='weights=keras',
      overrides={'total_steps': 5},
  )
  assert calls == [
      (
          str(tmp_path / cut),
          'configs/paper/vgg16.py',
          f'dataset=lfw,weights=keras,cut={cut}',
          ('none', 'siamese'),
          '/tfds',
          {'total_steps': 5},
      )
      for cut in ('conv4_3', 'fc6')
  ]
  assert '## Cut conv4_3' in text and '| table for fc6 |' in text
  assert open(tmp_path / 'sweep.md').read() == text


@pytest.mark.parametrize(
    'config,cuts,match',
    [
        ('configs/paper/vgg16.py:dataset=lfw,cut=fc6', ['fc6'], 'the config arguments set cut'),
        ('configs/paper/vgg16.py:siamese', ['fc6'], 'set siamese'),
        ('configs/paper/vgg16.py', [], '--cuts is empty'),
        ('configs/paper/vgg16.py', ['fc6', 'fc6'], 'names a layer twice'),
    ],
)
def test_sweep_refuses_arguments_it_sets_itself(tmp_path, config, cuts, match):
  with pytest.raises(errors.ConfigError, match=match):
    sweep.run_sweep(str(tmp_path), config, cuts, None, ('none',))


@pytest.mark.parametrize('key', ['model.cut', 'defence.name', 'init_from'])
def test_sweep_and_pipeline_refuse_overrides_of_what_they_set(tmp_path, key):
  with pytest.raises(errors.ConfigError, match=f'--config.{key} is set by the sweep'):
    sweep.run_sweep(str(tmp_path), PAPER, ['fc6'], None, ('none',), overrides={key: 'x'})
  if key != 'model.cut':
    with pytest.raises(errors.ConfigError, match=f'--config.{key} is set by each run'):
      reproduce.run_pipeline(str(tmp_path), PAPER, '', None, ['none'], overrides={key: 'x'})
  assert os.listdir(tmp_path) == []


def test_weight_files_as_the_config_names_them_are_as_pretrained_reads_them(paper):
  """One table of weight formats (privjax.models.weight_formats, no jax) for the config and the
  importer."""
  assert paper.source_for is pretrained.source_for
  assert paper.normalization_for is pretrained.normalization_for
  for source in paper.WEIGHTS:
    assert paper.source_for(paper.WEIGHTS[source]) == source


def test_vgg16_siamese_train_step_and_evaluation_on_224_images(paper, make_step):
  """One jitted Siamese step (2 pairs) and one evaluation of the paper's network, on CPU."""
  config = paper.get_config('dataset=lfw,cut=conv5_3,siamese')
  setup = make_step(config)
  graphdef, state = setup.graphdef, setup.state
  params = state['params']
  rng = np.random.default_rng(0)
  batch = {
      'image': rng.integers(0, 256, (2, 2, 224, 224, 3), dtype=np.uint8),
      'label': np.array([[0, 0], [0, 1]], np.int32),
      'same': np.array([1, 0], np.int32),
  }
  train_step = jax.jit(setup.step)
  before = np.asarray(params['extractor']['conv1_1']['conv']['kernel'])
  state, metrics = train_step(state, batch)
  chex.assert_trees_all_equal_shapes_and_dtypes(state['params'], params)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert int(state['step']) == 1
  assert not np.array_equal(state['params']['extractor']['conv1_1']['conv']['kernel'], before)

  eval_step = jax.jit(step_lib.make_eval_step(graphdef, 'gender'))
  images = batch['image'].reshape(4, 224, 224, 3)
  correct, _, count = eval_step(
      state['params'],
      {
          'image': images,
          'gender': np.zeros(4, np.int32),
          'mask': np.array([1, 1, 1, 0], np.float32),
      },
      jax.random.key(0),
  )
  assert float(count) == 3 and 0 <= float(correct) <= 3
  extract = jax.jit(lambda p, x: nnx.merge(graphdef, p).extractor(x))
  features = extract(state['params'], images)
  chex.assert_shape(
      features, (4,) + models.feature_shape(models.get_architecture('vgg16'), 'conv5_3')
  )
