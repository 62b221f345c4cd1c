"""Benchmark: privjax's Siamese training step, feature extraction, attacker fit and input pipeline,
against a PyTorch reference of the same step.

    python benchmarks/train_step.py [--models vgg_mini,vgg16] [--batch 32] [--windows 5]
                                    [--dtype float32|bfloat16] [--torch auto|off] [--json PATH]

For each model at its default cut (vgg_mini 64x64, vgg16 224x224), each rate is the median of
--windows timing windows (each about --window-seconds long) after compilation; the windows of the
privjax step, the extractor and the PyTorch steps take turns, so load from other processes hits
them alike:

  train     the jitted step the training loop runs (privjax.train.step.compiled_steps: replicated
            donated state, batch sharded over every device), images/s with both Siamese branches
            counted (2 x --batch images per step); the batch is random uint8 already on the
            device, so the step is timed without its input. XLA's cost_analysis() flops of the
            compiled step give the achieved FLOP/s and, on GPU/TPU, the model FLOP utilisation
            against the chip's bf16 dense peak (PEAK_BF16; also for --dtype float32). Where
            privjax.train.step.compiler_options sets XLA options (CPU), the same step compiled
            with XLA's defaults is timed beside it ("XLA defaults").
  extract   the extractor alone (the part that runs on the user's device), images/s, compiled with
            the training step's XLA options (privjax.train.step.compiler_options).
  attack    privjax.attacks.linear.fit_linear with its defaults (l2 grid, val selection, refit) on
            random features of the cut's size: --attack-rows rows, --attack-classes Gaussian class
            means plus unit noise (not features of real images), seconds per warm fit.
  torch     the same step in PyTorch (benchmarks/torch_reference.py: same layers and widths, same
            loss, Adam with the head at 10x), channels-last, torch.set_num_threads(usable CPUs),
            OMP_WAIT_POLICY=PASSIVE unless set, eager and torch.compile; ratio privjax/PyTorch from
            this run. Skipped without PyTorch.
  pipeline  privjax.data.pipeline.pair_batches on the default synthetic_faces data (built on first
            use; resized for vgg16) with the default config's data_threads, pair batches/s and
            images/s, and its ratio to the train step. Skipped without grain/TFDS.

Default --batch: 32 pairs (the demo config) for vgg_mini; for vgg16 2 pairs on CPU, 64 on GPU/TPU.
Other processes on the machine skew the numbers: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

try:
  import privjax  # noqa: F401
except ImportError:  # run from a checkout without installing the package
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from privjax import models
from privjax.train import step as step_lib

# bf16 dense peak FLOP/s per chip, by a substring of jax.devices()[0].device_kind (first match).
PEAK_BF16 = (
    ('H100 PCIe', 756e12),
    ('H100 NVL', 835e12),
    ('H100', 989e12),
    ('H200', 989e12),
    ('GH200', 989e12),
    ('A100', 312e12),
    ('TPU v4', 275e12),
    ('TPU v5 lite', 197e12),
    ('TPU v5e', 197e12),
    ('TPU v5p', 459e12),
    ('TPU v5', 459e12),
    ('TPU v6 lite', 918e12),
    ('TPU v6e', 918e12),
)


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """The demo's Siamese settings (configs/default.py:siamese), hashable for compiled_steps."""

  lr: float = 1e-4
  head_lr_mult: float = 10.0
  b1: float = 0.9
  b2: float = 0.999


@dataclasses.dataclass(frozen=True)
class Contrastive:
  """The demo's contrastive loss (configs/default.py:siamese): weight and margin."""

  weight: float = 0.01
  margin: float = 10.0
  normalize: bool = False

  def defence_config(self) -> ml_collections.FrozenConfigDict:
    """As `config.defence` with the siamese defence, hashable for compiled_steps."""
    siamese = dict(
        weight=self.weight,
        margin=self.margin,
        margin_mode='fixed',
        margin_scale=1.0,
        normalize=self.normalize,
        strength='weight',
        strengths=(),
    )
    return ml_collections.FrozenConfigDict(
        {'name': 'siamese', 'calibration_batches': 4, 'siamese': siamese}
    )


def compiled_siamese_step(model, mesh):
  """(graphdef, optimizer, defence, state, jitted train step) of privjax's training loop for the
  demo's Siamese objective."""
  from privjax import defences

  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  context = defences.context_for(
      ml_collections.ConfigDict({'model': {'arch': model.arch, 'cut': model.cut}}),
      (('label', model.num_classes),),
  )
  tx, defence, train_step, _ = step_lib.compiled_steps(
      graphdef, Optimizer(), Contrastive().defence_config(), context, 0, 'label', mesh
  )
  state = step_lib.init_state(params, tx, defence.init_state(jax.random.key(0)))
  return graphdef, tx, defence, state, train_step


def cpu_count() -> int:
  """CPUs this process may run on (XLA sizes its thread pool the same way)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def peak_flops(kind: str) -> float | None:
  return next((peak for key, peak in PEAK_BF16 if key.lower() in kind.lower()), None)


def windows(runners: dict, count: int, seconds: float) -> dict[str, float]:
  """Median seconds per iteration of each runner; run(n) does n iterations and waits for them.

  Each runner's window holds enough iterations for about `seconds`; the runners take turns.
  """
  sizes = {}
  for name, run in runners.items():
    run(1)
    start = time.perf_counter()
    run(1)
    sizes[name] = max(1, math.ceil(seconds / max(time.perf_counter() - start, 1e-6)))
  times = {name: [] for name in runners}
  for _ in range(count):
    for name, run in runners.items():
      start = time.perf_counter()
      run(sizes[name])
      times[name].append((time.perf_counter() - start) / sizes[name])
  return {name: statistics.median(t) for name, t in times.items()}


def flops_of(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float(cost['flops']) if cost and cost.get('flops') else None


def random_pairs(batch: int, size: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, (batch, 2)).astype(np.int32)
  return {
      'image': rng.integers(0, 256, (batch, 2, size, size, 3), dtype=np.uint8),
      'label': labels,
      'same': (labels[:, 0] == labels[:, 1]).astype(np.float32),
  }


def privjax_runners(arch, cut, batch, dtype) -> tuple[dict, dict]:
  """({compile_s, flops_per_step}, {'train': run, 'extract': run})."""
  mesh = jax.make_mesh((jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  model = models.SplitModel(
      arch.name, cut, 2, rngs=nnx.Rngs(0), dtype=jnp.bfloat16 if dtype == 'bfloat16' else None
  )
  graphdef, tx, defence, state, train_step = compiled_siamese_step(model, mesh)
  state = jax.device_put(state, replicated)
  pairs = jax.device_put(random_pairs(batch, arch.image_size), data)

  start = time.perf_counter()
  compiled = train_step.lower(state, pairs).compile()
  out = {'compile_s': time.perf_counter() - start, 'flops_per_step': flops_of(compiled)}
  box = [state]

  def train(n):
    for _ in range(n):
      box[0], metrics = compiled(box[0], pairs)
    jax.block_until_ready((box[0], metrics))

  extract = jax.jit(
      lambda p, x: nnx.merge(graphdef, p).extractor(x),
      in_shardings=(replicated, data),
      out_shardings=data,
      compiler_options=step_lib.compiler_options(jax.default_backend()),
  )
  images = jax.device_put(pairs['image'].reshape((-1,) + pairs['image'].shape[2:]), data)
  extract = extract.lower(box[0]['params'], images).compile()

  def features(n):
    for _ in range(n):
      f = extract(box[0]['params'], images)
    jax.block_until_ready(f)

  runners = {'train': train, 'extract': features}
  if step_lib.compiler_options(jax.default_backend()):
    # The same step with XLA's default options, to show what privjax's options change.
    plain = (
        jax.jit(
            step_lib.make_train_step(graphdef, tx, defence),
            in_shardings=(replicated, data),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        .lower(state, pairs)
        .compile()
    )
    plain_box = [jax.tree.map(jnp.copy, box[0])]

    def train_xla_defaults(n):
      for _ in range(n):
        plain_box[0], metrics = plain(plain_box[0], pairs)
      jax.block_until_ready((plain_box[0], metrics))

    runners['train_xla_defaults'] = train_xla_defaults
  return out, runners


def privjax_rates(info: dict, sec: dict, batch: int) -> dict:
  out = dict(
      info,
      step_ms=1e3 * sec['train'],
      train_images_per_s=2 * batch / sec['train'],
      extract_images_per_s=2 * batch / sec['extract'],
  )
  if 'train_xla_defaults' in sec:
    out['xla_defaults_images_per_s'] = 2 * batch / sec['train_xla_defaults']
  if info['flops_per_step']:
    out['achieved_tflops'] = info['flops_per_step'] / sec['train'] / 1e12
    peak = peak_flops(jax.devices()[0].device_kind)
    if peak and jax.default_backend() != 'cpu':
      out['mfu'] = info['flops_per_step'] / sec['train'] / (peak * jax.device_count())
  return out


def bench_attack(arch, cut, args) -> dict:
  from privjax.attacks.linear import fit_linear

  dim = math.prod(models.feature_shape(arch, cut))
  rng = np.random.default_rng(0)
  y = rng.integers(0, args.attack_classes, args.attack_rows)
  means = rng.standard_normal((args.attack_classes, dim), dtype=np.float32) * 0.1
  x = means[y] + rng.standard_normal((args.attack_rows, dim), dtype=np.float32)
  start = time.perf_counter()
  fit_linear(x, y)
  first = time.perf_counter() - start
  times = []
  for _ in range(max(1, min(args.windows, 3))):
    start = time.perf_counter()
    fit_linear(x, y)
    times.append(time.perf_counter() - start)
  return {
      'attack_fit_s': statistics.median(times),
      'attack_first_fit_s': first,
      'attack_shape': [args.attack_rows, dim],
  }


def torch_runners(arch, cut, batch, dtype, args) -> tuple[dict, dict]:
  """(facts, {'torch_eager': run, 'torch_compile': run}); compiled and warmed up."""
  # Busy-waiting OpenMP threads lose several-fold on a CPU shared with other processes (measured
  # 1.2 s vs 0.2 s per vgg_mini step on 2 shared cores); set OMP_WAIT_POLICY=ACTIVE to compare.
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  try:
    import torch
  except ImportError:
    return {'torch': 'not installed'}, {}
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_reference

  torch.set_num_threads(cpu_count())
  device = 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  host = random_pairs(batch, arch.image_size)
  images = torch.from_numpy(host['image']).to(device)
  labels = torch.from_numpy(host['label']).long().to(device)
  same = torch.from_numpy(host['same']).to(device)
  opt, con = Optimizer(), Contrastive()
  out = {
      'torch_version': torch.__version__,
      'torch_threads': torch.get_num_threads(),
      'omp_wait_policy': os.environ['OMP_WAIT_POLICY'],
  }
  runners = {}
  for name, compile in (('eager', False), ('compile', True)):
    if compile and not args.torch_compile:
      continue
    torch.manual_seed(0)
    model = torch_reference.SplitVGG(arch.name, cut, 2).to(device)
    model = model.to(memory_format=torch.channels_last)
    step = torch_reference.make_train_step(
        model,
        lr=opt.lr,
        head_lr_mult=opt.head_lr_mult,
        weight=con.weight,
        margin=con.margin,
        compile=compile,
        autocast_dtype=torch.bfloat16 if dtype == 'bfloat16' else None,
    )

    def train(n):
      for _ in range(n):
        loss = step(images, labels, same)
      loss.item()
      sync()

    try:
      start = time.perf_counter()
      train(1)  # compiles (torch.compile) and allocates optimizer state
      out[f'torch_{name}_first_step_s'] = time.perf_counter() - start
    except Exception as e:  # torch.compile needs a working C++ toolchain on CPU
      out[f'torch_{name}'] = f'failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}'
      continue
    runners[f'torch_{name}'] = train
  return out, runners


def bench_pipeline(arch, batch, args) -> dict:
  try:
    from privjax.data import pipeline, synthetic_faces
  except ImportError as e:
    return {'pipeline': f'skipped ({e})'}
  builder = synthetic_faces.build('default', data_dir=args.data_dir or None)
  split = pipeline.load_split(builder, 'train')
  size = arch.image_size
  pre = pipeline.Preprocess(
      size=size, resize=split.image_shape[0] != size, center_crop=1.0, flip=True
  )
  batches = pipeline.pair_batches(split, 'gender', batch, pre, seed=0, threads=args.data_threads)

  for _ in range(8):  # fills grain's read-ahead buffer, as during training
    next(batches)
  # Windows of fixed duration: a read-ahead buffer makes one batch's time a useless calibration.
  times = []
  for _ in range(args.windows):
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < args.window_seconds:
      next(batches)
      n += 1
    times.append((time.perf_counter() - start) / n)
  sec = statistics.median(times)
  return {
      'pipeline_batches_per_s': 1 / sec,
      'pipeline_images_per_s': 2 * batch / sec,
      'pipeline_threads': args.data_threads,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--models', default='vgg_mini,vgg16')
  parser.add_argument('--batch', type=int, default=None, help='pairs per step (2x images)')
  parser.add_argument('--windows', type=int, default=5)
  parser.add_argument('--window-seconds', type=float, default=2.0)
  parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32')
  parser.add_argument('--torch', choices=('auto', 'off'), default='auto')
  parser.add_argument('--torch-compile', type=int, default=1, help='0 skips torch.compile')
  parser.add_argument('--attack-rows', type=int, default=1000)
  parser.add_argument('--attack-classes', type=int, default=50)
  parser.add_argument('--skip', default='', help='comma-separated: attack,torch,pipeline')
  parser.add_argument('--data-dir', default='', help='TFDS data dir (default: TFDS default)')
  parser.add_argument('--data-threads', type=int, default=2)
  parser.add_argument('--json', default='', help='also write the results to this file')
  args = parser.parse_args(argv)
  skip = set(filter(None, args.skip.split(',')))
  if args.torch == 'off':
    skip.add('torch')

  device = jax.devices()[0]
  header = {
      'backend': jax.default_backend(),
      'device_kind': device.device_kind,
      'devices': jax.device_count(),
      'cpus': cpu_count(),
      'jax': jax.__version__,
      'load_before': os.getloadavg(),
  }
  print(json.dumps(header), flush=True)
  results = []
  for name in filter(None, args.models.split(',')):
    arch = models.get_architecture(name)
    cut = arch.default_cut
    batch = args.batch or (
        32 if name == 'vgg_mini' else 2 if jax.default_backend() == 'cpu' else 64
    )
    row = {'model': name, 'cut': cut, 'batch_pairs': batch, 'dtype': args.dtype}
    info, runners = privjax_runners(arch, cut, batch, args.dtype)
    if 'torch' not in skip:
      facts, more = torch_runners(arch, cut, batch, args.dtype, args)
      row.update(facts)
      runners.update(more)
    sec = windows(runners, args.windows, args.window_seconds)
    row.update(privjax_rates(info, sec, batch))
    for key in sec:
      if key.startswith('torch_'):
        row[f'{key}_step_ms'] = 1e3 * sec[key]
        row[f'{key}_images_per_s'] = 2 * batch / sec[key]
    print(json.dumps(row), flush=True)
    for part, fn in (
        ('pipeline', lambda: bench_pipeline(arch, batch, args)),
        ('attack', lambda: bench_attack(arch, cut, args)),
    ):
      if part not in skip:
        row.update(fn())
        print(json.dumps({k: v for k, v in row.items() if k.startswith(part)}), flush=True)
    row['load_after'] = os.getloadavg()
    results.append(row)
  print(summary(results, header))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'header': header, 'results': results}, f, indent=2)


def summary(results, header) -> str:
  lines = [
      f"\n{header['device_kind']} x{header['devices']} ({header['backend']}), "
      f"{header['cpus']} CPUs, load {header['load_before'][0]:.1f}"
  ]
  for r in results:
    lines.append(
        f"{r['model']} (cut {r['cut']}, {r['batch_pairs']} pairs = "
        f"{2 * r['batch_pairs']} images/step, {r['dtype']}):"
    )
    perf = (
        f"  privjax train    {r['train_images_per_s']:9.1f} images/s  "
        f"{r['step_ms']:8.1f} ms/step"
    )
    if r.get('achieved_tflops'):
      perf += f"  {r['achieved_tflops'] * 1e3:8.1f} GFLOP/s"
    if r.get('mfu') is not None:
      perf += f"  MFU {100 * r['mfu']:.1f}% of bf16 peak"
    lines.append(perf + f"  (compile {r['compile_s']:.1f} s)")
    if r.get('xla_defaults_images_per_s'):
      lines.append(
          f"  ... XLA defaults {r['xla_defaults_images_per_s']:9.1f} images/s  "
          '(the same step without privjax.train.step.compiler_options)'
      )
    lines.append(f"  privjax extract  {r['extract_images_per_s']:9.1f} images/s")
    best = None
    for name in ('eager', 'compile'):
      rate = r.get(f'torch_{name}_images_per_s')
      if rate:
        lines.append(
            f'  torch {name:10s} {rate:9.1f} images/s  '
            f"{r[f'torch_{name}_step_ms']:8.1f} ms/step  privjax/torch = "
            f"{r['train_images_per_s'] / rate:.2f}"
        )
        best = max(best or 0, rate)
      elif f'torch_{name}' in r:
        lines.append(f"  torch {name:10s} {r[f'torch_{name}']}")
    if best:
      lines.append(f"  privjax / best torch = {r['train_images_per_s'] / best:.2f}")
    if 'pipeline_images_per_s' in r:
      lines.append(
          f"  input pipeline   {r['pipeline_images_per_s']:9.1f} images/s  "
          f"{r['pipeline_batches_per_s']:.2f} pair batches/s  pipeline/step = "
          f"{r['pipeline_images_per_s'] / r['train_images_per_s']:.2f}"
      )
    elif 'pipeline' in r:
      lines.append(f"  input pipeline   {r['pipeline']}")
    if 'attack_fit_s' in r:
      rows, dim = r['attack_shape']
      lines.append(
          f"  linear attacker  {r['attack_fit_s']:9.2f} s per fit on {rows} x {dim} "
          f"random features (first fit with compile {r['attack_first_fit_s']:.2f} s)"
      )
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
