"""What each cut costs the device and the cloud: the measurements (the command is `privjax cost`).

For every valid cut of the configured architecture (or the `--cuts` subset), one row of:
  * extractor (device) parameters, their float32 bytes, FLOPs at batch 1 from XLA's cost analysis of
    the compiled extractor (its `Normalize` input layer included), peak activation memory and the
    median latency at batch 1 on this machine;
  * what is uploaded per image: the cut features in float32 / float16 / int8 bytes, and the k
    float32 values after PCA-k, with the PCA projection's own parameters and FLOPs (the device
    runs it);
  * head (cloud) parameters and FLOPs at batch 1.
`evaluation_points` joins evaluated runs to the table; `privjax.cost.report` writes it as JSON,
markdown and a plot.

Weights are random (He-scaled normal, see `random_model`): FLOPs, memory and sizes depend on shapes
alone and latency barely on the values, so no checkpoint is needed.

XLA counts FLOPs exactly as executed: a 3x3 'SAME' convolution counts only the taps that fall inside
the image, 2·Cin·Cout·(3H-2)(3W-2), not the textbook 2·H·W·Cin·Cout·9; bias add and ReLU add
one FLOP per output element each, a 2x2 max pool three.

Peak activation memory is the larger of two figures, both in the row: XLA's buffer assignment
(temporary + output buffers, parameters excluded; source 'xla') and the largest input + output of a
single layer computed from shapes (what a runtime that frees each input after its layer holds;
source 'shapes'). XLA's figure alone is not enough: the CPU backend hands runs of layers to a
library fusion (YNNPACK) whose internal buffers it does not report, down to temp = 0 for vgg16's
convolutions. `peak_activation_source` says which figure was larger.

Must not import privjax.train, privjax.data or privjax.attacks: costs need neither data nor a run;
nor matplotlib or absl flags (rendering lives in `privjax.cost.report`, the command in
`privjax.commands.cost`).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

import privjax
from privjax import models
from privjax.config import DTYPES
from privjax.errors import ConfigError, EvalError
from privjax.privacy import pca as pca_lib


def textbook_flops(arch, num_classes: int) -> dict[str, int]:
  """Forward FLOPs of one image per layer by the textbook count that MFU figures use.

  2·H·W·Cin·Cout·9 per 3x3 convolution (padding taps included) and 2·in·out per dense layer;
  bias, ReLU and pooling are not counted. XLA's GPU cost analysis leaves cuDNN convolutions out,
  so model FLOP utilisation is computed from this count instead (a training step is conventionally
  3x the forward pass: the backward pass computes an input and a weight gradient per layer).
  """
  arch = models.get_architecture(arch)
  shape, out = (arch.image_size, arch.image_size, 3), {}
  for spec in arch.layers:
    if spec.kind == 'conv':
      out[spec.name] = 2 * shape[0] * shape[1] * shape[2] * spec.features * 9
    elif spec.kind in ('dense', 'classifier'):
      width = num_classes if spec.kind == 'classifier' else spec.features
      out[spec.name] = 2 * math.prod(shape) * width
    shape = models.feature_shape(arch, spec.name) if spec.kind != 'classifier' else shape
  return out


def compiled_cost(fn, *args) -> dict:
  """FLOPs and XLA buffer sizes of `jax.jit(fn)` compiled for `args` (arrays or shape structs)."""
  compiled = jax.jit(fn).lower(*args).compile()
  analysis = compiled.cost_analysis()
  # Older jax returned one dict per device program; 0.10 returns the dict itself.
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  memory = compiled.memory_analysis()
  return {
      'flops': int(analysis['flops']),
      'compiled': compiled,
      'temp_bytes': None if memory is None else int(memory.temp_size_in_bytes),
      'output_bytes': None if memory is None else int(memory.output_size_in_bytes),
  }


def _nbytes(struct) -> int:
  return math.prod(struct.shape) * jnp.dtype(struct.dtype).itemsize


def largest_layer_activation(stack: models.vgg.Stack, x) -> int:
  """Max over layers of input + output bytes from `x`'s shape: what an unfused runtime holds."""
  peak = 0
  for name in stack.names:
    y = jax.eval_shape(getattr(stack, name), x)
    peak = max(peak, _nbytes(x) + _nbytes(y))
    x = y
  return peak


def _count(tree) -> int:
  return sum(math.prod(np.shape(a)) for a in jax.tree_util.tree_leaves(tree))


def median_latency(compiled, args, repeats: int) -> tuple[float, float]:
  """(median, 90th percentile) seconds of `compiled(*args)`: `repeats` runs after two warm-ups."""
  for _ in range(2):
    jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times), float(np.percentile(times, 90))


def random_model(config, num_classes: int, seed: int) -> models.SplitModel:
  """The configured model with He-scaled normal weights drawn by numpy.

  nnx's own initialisers compile one XLA program per parameter shape, seconds each on a small CPU;
  numpy needs none. He scaling keeps activations O(1), so no layer runs on denormals.
  """
  abstract = nnx.eval_shape(
      lambda: models.model_from_config(config, num_classes, rngs=nnx.Rngs(seed))
  )
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)

  def init(x):
    if len(x.shape) < 2:
      return np.zeros(x.shape, x.dtype)
    scale = math.sqrt(2.0 / math.prod(x.shape[:-1]))
    return (scale * rng.standard_normal(x.shape, np.float32)).astype(x.dtype)

  return nnx.merge(graphdef, jax.tree_util.tree_map(init, state))


def check_request(
    config, *, pca_k: int, repeats: int, cuts
) -> tuple[models.vgg.Architecture, list[str]]:
  try:
    arch = models.get_architecture(config.model.arch)
  except ValueError as e:
    raise ConfigError(f'model: {e}') from None
  if config.model.dtype not in DTYPES:
    raise ConfigError(
        f'model.dtype={config.model.dtype!r} is not valid; choose one of: ' f'{", ".join(DTYPES)}'
    )
  if pca_k < 1 or repeats < 1:
    raise ConfigError(f'--pca_k and --repeats must be positive, got {pca_k} and {repeats}')
  cuts = list(arch.valid_cuts if cuts is None else cuts)
  unknown = [c for c in cuts if c not in arch.valid_cuts]
  if unknown:
    raise ConfigError(
        f'{arch.name} has no cut {", ".join(unknown)}; valid: ' f'{", ".join(arch.valid_cuts)}'
    )
  return arch, cuts


def cut_cost(config, cut: str, *, pca_k: int, repeats: int, num_classes: int = 2) -> dict:
  """One row of the cost table (see the module docstring)."""
  arch = models.get_architecture(config.model.arch)
  model_config = ml_collections.ConfigDict(config.to_dict())
  model_config.model.cut = cut
  model = random_model(model_config, num_classes, config.seed)
  shape = models.feature_shape(arch, cut)
  dims = math.prod(shape)

  ext_graph, ext_params = nnx.split(model.extractor)
  pixels = jax.random.randint(
      jax.random.key(0), (1, arch.image_size, arch.image_size, 3), 0, 256, jnp.int32
  ).astype(jnp.uint8)
  ext = compiled_cost(lambda p, x: nnx.merge(ext_graph, p)(x), ext_params, pixels)
  by_shapes = largest_layer_activation(
      model.extractor, jax.ShapeDtypeStruct(pixels.shape, pixels.dtype)
  )
  by_xla = None if ext['temp_bytes'] is None else ext['temp_bytes'] + ext['output_bytes']
  peak, source = max((by_shapes, 'shapes'), (by_xla or 0, 'xla'))
  latency, latency_p90 = median_latency(ext['compiled'], (ext_params, pixels), repeats)

  features = jax.eval_shape(model.extractor, pixels)
  head_graph, head_params = nnx.split(model.head)
  head = compiled_cost(lambda p, f: nnx.merge(head_graph, p)(f), head_params, features)

  row = {
      'cut': cut,
      'feature_shape': list(shape),
      'feature_dims': dims,
      'extractor_params': _count(ext_params),
      'extractor_param_bytes': 4 * _count(ext_params),
      'extractor_flops': ext['flops'],
      'peak_activation_bytes': peak,
      'peak_activation_source': source,
      'xla_temp_bytes': ext['temp_bytes'],
      'xla_output_bytes': ext['output_bytes'],
      'largest_layer_activation_bytes': by_shapes,
      'latency_ms': 1e3 * latency,
      'latency_p90_ms': 1e3 * latency_p90,
      'upload_float32_bytes': 4 * dims,
      'upload_float16_bytes': 2 * dims,
      'upload_int8_bytes': dims,
      'pca_k': None,
      'upload_pca_bytes': None,
      'pca_params': None,
      'pca_flops': None,
      'head_params': _count(head_params),
      'head_param_bytes': 4 * _count(head_params),
      'head_flops': head['flops'],
  }
  if pca_k <= dims:
    f32 = lambda s: jax.ShapeDtypeStruct(s, jnp.float32)
    pca = pca_lib.PCA(f32((dims,)), f32((pca_k, dims)), f32((pca_k,)), tuple(shape))
    row.update(
        pca_k=pca_k,
        upload_pca_bytes=4 * pca_k,
        pca_params=(pca_k + 1) * dims,
        pca_flops=compiled_cost(lambda p, f: p.apply(f), pca, f32(features.shape))['flops'],
    )
  return row


def cost_table(
    config, *, pca_k: int = 32, repeats: int = 50, cuts=None, num_classes: int = 2
) -> list[dict]:
  """A `cut_cost` row for every valid cut of `config.model.arch` (or `cuts`), shallowest first."""
  _, cuts = check_request(config, pca_k=pca_k, repeats=repeats, cuts=cuts)
  return [
      cut_cost(config, cut, pca_k=pca_k, repeats=repeats, num_classes=num_classes) for cut in cuts
  ]


def machine() -> dict:
  device = jax.devices()[0]
  return {
      'platform': device.platform,
      'device_kind': device.device_kind,
      'processor': platform.processor() or platform.machine(),
      'cpu_count': os.cpu_count(),
      'jax': jax.__version__,
      'privjax': privjax.__version__,
  }


def evaluation_points(reports: list[dict], names: list[str], arch: str) -> list[dict]:
  """(cut, primary accuracy, strongest identity top-1, both in %) of each evaluated run,
  untransformed and noiseless."""
  from privjax.metrics import results

  points = []
  for report, name in zip(reports, names):
    if report.get('arch') != arch:
      raise EvalError(f'{name} evaluates {report.get("arch")}, not {arch}')
    entry = next(
        (e for e in report['settings'] if e['transform'] == 'none' and e['noise_variance'] == 0),
        None,
    )
    leak = None if entry is None else results.best(entry['metrics'], 'leak', secret='identity')
    if leak is None:
      raise EvalError(
          f'{name}: its report has no identity attack on untransformed, noiseless '
          'features; evaluate with transform none, noise variance 0, secret identity'
      )
    points.append(
        {
            'run': name,
            'defence': report['defence']['name'],
            'cut': report['cut'],
            'primary': report['primary'],
            'primary_accuracy': report['full_model_accuracy']['value'],
            'identity_top1': leak[1].value,
        }
    )
  return points
