"""Cost per cut: XLA's FLOP counts against exact counts, sizes against arrays, one row per cut;
the rendered report and the command."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from privjax import api, models
from privjax import config as config_lib
from privjax.cost import analysis
from privjax.cost import report as cost_report
from privjax.errors import ConfigError
from privjax.metrics import results

pytestmark = pytest.mark.unit

ROOT = os.path.join(os.path.dirname(__file__), '..')


def conv_flops(h, w, cin, cout):
  """Exact FLOPs XLA counts for a 3x3 'SAME' conv + bias + ReLU.

  XLA counts a multiply-add (2 FLOPs) only for kernel taps that land inside the image: along one
  axis of length n, the 3 taps of the n outputs touch 3n - 2 input positions (the two borders lose
  one each). So 2·Cin·Cout·(3H-2)(3W-2) instead of the textbook 2·H·W·Cin·Cout·9, plus one
  FLOP per output element for the bias add and one for the ReLU (a max).
  """
  return 2 * cin * cout * (3 * h - 2) * (3 * w - 2) + 2 * h * w * cout


def dense_flops(n_in, n_out, relu=True):
  return 2 * n_in * n_out + n_out * (2 if relu else 1)  # matmul, bias, ReLU


def test_one_conv_layer_flops_match_the_exact_count():
  layer = models.vgg.Conv(3, 16, dtype=None, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  flops = analysis.compiled_cost(lambda p, x: nnx.merge(graphdef, p)(x), params, x)['flops']
  assert flops == conv_flops(64, 64, 3, 16)
  # The textbook count is an upper bound: padding taps are not computed.
  assert flops < 2 * 64 * 64 * 3 * 16 * 9 + 2 * 64 * 64 * 16


@pytest.fixture(scope='module')
def table():
  module = config_lib.config_module(os.path.join(ROOT, 'configs', 'default.py'))
  config = module.get_config('none')
  return config, {r['cut']: r for r in analysis.cost_table(config, pca_k=8, repeats=1)}


def test_table_has_a_row_per_valid_cut_with_the_models_parameter_counts(table):
  config, rows = table
  arch = models.get_architecture('vgg_mini')
  assert list(rows) == list(arch.valid_cuts)
  for cut, row in rows.items():
    model = nnx.eval_shape(lambda: models.SplitModel('vgg_mini', cut, 2, rngs=nnx.Rngs(0)))
    count = lambda m: sum(
        math.prod(a.shape) for a in jax.tree_util.tree_leaves(nnx.state(m, nnx.Param))
    )
    assert row['extractor_params'] == count(model.extractor), cut
    assert row['head_params'] == count(model.head), cut
    assert row['extractor_param_bytes'] == 4 * row['extractor_params']
    assert row['latency_ms'] > 0
    xla = row['xla_temp_bytes'] + row['xla_output_bytes']
    assert row['peak_activation_bytes'] == max(xla, row['largest_layer_activation_bytes'])
  # conv2_1's extractor: input 64x64x3 uint8 -> float32, conv1_1 to 64x64x16, pool1 to 32x32x16,
  # conv2_1 to 32x32x32; the largest input + output is pool1's, in float32.
  assert rows['conv2_1']['largest_layer_activation_bytes'] == 4 * (64 * 64 * 16 + 32 * 32 * 16)


def test_upload_sizes_are_the_feature_array_sizes(table):
  _, rows = table
  for cut, row in rows.items():
    model = nnx.eval_shape(lambda: models.SplitModel('vgg_mini', cut, 2, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(model.extractor)
    features = jax.eval_shape(
        lambda p, x: nnx.merge(graphdef, p)(x),
        params,
        jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.uint8),
    )
    dims = math.prod(features.shape[1:])
    assert row['feature_shape'] == list(features.shape[1:])
    assert row['upload_float32_bytes'] == dims * features.dtype.itemsize == 4 * dims
    assert row['upload_float16_bytes'] == 2 * dims and row['upload_int8_bytes'] == dims
    assert row['upload_pca_bytes'] == 4 * 8 and row['pca_params'] == 9 * dims
    assert row['pca_flops'] == 2 * 8 * dims + dims  # projection and mean subtraction


def test_table_flops_per_layer_are_exact(table):
  _, rows = table
  flops = lambda cut: rows[cut]['extractor_flops']
  # Consecutive cuts differ by exactly one layer of the extractor.
  assert flops('conv3_2') - flops('conv3_1') == conv_flops(16, 16, 64, 64)
  assert flops('conv4_2') - flops('conv4_1') == conv_flops(8, 8, 128, 128)
  assert flops('pool3') - flops('conv3_2') == 8 * 8 * 64 * 3  # 3 comparisons per 2x2 window
  assert flops('fc6') - flops('pool4') == dense_flops(4 * 4 * 128, 256)
  assert rows['fc7']['head_flops'] == dense_flops(256, 2, relu=False)
  assert rows['fc6']['head_flops'] == dense_flops(256, 256) + dense_flops(256, 2, relu=False)


def test_unknown_cut_and_bad_sizes_are_one_line_errors(table):
  config, _ = table
  with pytest.raises(ConfigError, match=r'vgg_mini has no cut conv1_1; valid: conv2_1, pool2'):
    analysis.cost_table(config, pca_k=8, repeats=1, cuts=['conv1_1'])
  with pytest.raises(ConfigError, match='must be positive'):
    analysis.cost_table(config, pca_k=0, repeats=1)
  bad = config.copy_and_resolve_references()
  bad.model.arch = 'vgg99'
  with pytest.raises(ConfigError, match="unknown architecture 'vgg99'"):
    analysis.cost_table(bad, pca_k=8, repeats=1)


def test_report_leaves_the_callers_matplotlib_backend_alone(table, tmp_path, monkeypatch):
  import matplotlib

  monkeypatch.setitem(matplotlib.rcParams, 'backend', 'svg')  # e.g. a notebook's choice
  _, rows = table
  meta = {
      'arch': 'vgg_mini',
      'image_size': 64,
      'dtype': 'float32',
      'pca_k': 8,
      'repeats': 1,
      'machine': analysis.machine(),
  }
  paths = cost_report.write(list(rows.values()), meta, [], str(tmp_path))
  assert matplotlib.rcParams['backend'] == 'svg'
  assert (tmp_path / 'cost.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert '| conv2_1 |' in open(paths['md']).read()


def test_command_writes_table_and_plot_with_evaluated_runs(tmp_path):
  # Where evaluation writes the report of the run's step 6 (the run has no checkpoint: the report
  # folder is named).
  report_dir = pathlib.Path(api.report_dir(tmp_path / 'siamese', step=6))
  report_dir.mkdir(parents=True)
  (report_dir / 'report.json').write_text(
      json.dumps(
          {
              'format': results.REPORT_FORMAT,
              'arch': 'vgg_mini',
              'cut': 'fc7',
              'defence': {'name': 'siamese'},
              'primary': 'gender',
              'full_model_accuracy': results.percent(0.9).to_dict(),
              'settings': [
                  {
                      'transform': 'none',
                      'noise_variance': 0.0,
                      'metrics': {
                          'attackers/identity/linear': (
                              results.percent(0.25, role='leak', secret='identity').to_dict()
                          )
                      },
                  }
              ],
          }
      )
  )
  out = tmp_path / 'cost'
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'privjax',
          'cost',
          '--config',
          'configs/default.py',
          '--cuts',
          'pool4,fc7',
          '--repeats',
          '2',
          '--out',
          str(out),
          '--reports',
          str(report_dir),
      ],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  data = json.loads((out / 'cost.json').read_text())
  assert [r['cut'] for r in data['rows']] == ['pool4', 'fc7']
  assert data['evaluations'][0]['identity_top1'] == 25.0
  assert data['meta']['weights'].startswith('random')
  assert '| fc7 | 256 |' in (out / 'cost.md').read_text()
  assert (out / 'cost.png').stat().st_size > 0


def test_textbook_flops_of_vgg16_are_the_published_15_47_gmacs():
  # VGG-16 at 224x224 with 1000 classes: 15,470,264,320 multiply-adds, the figure quoted for it.
  per_layer = analysis.textbook_flops('vgg16', 1000)
  assert sum(per_layer.values()) == 2 * 15_470_264_320
  assert per_layer['conv1_1'] == 2 * 224 * 224 * 3 * 64 * 9
  assert per_layer['fc6'] == 2 * 7 * 7 * 512 * 4096
  assert per_layer['classifier'] == 2 * 4096 * 1000
  assert 'pool1' not in per_layer
  # vgg_mini (64x64): 16, 32, 64, 64, 128, 128 channels over 64, 32, 16, 16, 8, 8 pixels a side.
  mini = analysis.textbook_flops('vgg_mini', 2)
  convs = [(64, 3, 16), (32, 16, 32), (16, 32, 64), (16, 64, 64), (8, 64, 128), (8, 128, 128)]
  assert sum(v for k, v in mini.items() if k.startswith('conv')) == sum(
      2 * h * h * a * b * 9 for h, a, b in convs
  )
  assert mini['fc6'] == 2 * 4 * 4 * 128 * 256 and mini['fc7'] == 2 * 256 * 256
  assert mini['classifier'] == 2 * 256 * 2
