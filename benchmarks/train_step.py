"""Benchmark: privjax's Siamese training step, feature extraction, attacker fit and input pipeline,
against a PyTorch reference of the same step.

    python -m benchmarks.train_step [--models vgg_mini,vgg16] [--batch 32] [--windows 5]
                                    [--dtype float32|bfloat16] [--torch auto|off] [--json PATH]

For each model at its default cut (vgg_mini 64x64, vgg16 224x224), each rate is the median of
--windows timing windows (each about --window-seconds long) after compilation; the windows of the
privjax step, the extractor and the PyTorch steps take turns, so load from other processes hits
them alike:

  train     the jitted step the training loop runs (privjax.train.step.compiled_steps: replicated
            donated state, batch sharded over every device), images/s with both Siamese branches
            counted (2 x --batch images per step); the batch is random uint8 already on the
            device, so the step is timed without its input. Achieved FLOP/s by two counts: XLA's
            cost_analysis() of the compiled step (exact on CPU; on GPU it leaves cuDNN's
            convolutions out) and the textbook count (privjax.cost.analysis.textbook_flops, 3x
            forward); on GPU/TPU the model FLOP utilisation from the textbook count against the
            chip's bf16 dense peak (PEAK_BF16; also for --dtype float32). Where
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
  pipeline  the training input pipeline at the model's input size, as the training loop runs it
            (privjax.data.pipeline.pair_batches → privjax.train.loop.device_batches: read, PNG
            decode, the training config's augmentation, pair batching, device_put), with the data
            set and preprocessing of PIPELINE_CONFIGS (vgg16: the paper's config, 224x224, flip)
            on generated photos (PIPELINE_PHOTOS), --pipeline-batch pairs per batch. For each CPU
            count in --pipeline-cpus it runs in a process of its own pinned to that many CPUs
            (os.sched_setaffinity), with threads only (the config's data_threads) and with one
            grain worker process per CPU (mp_prefetch). Reported: images/s; images per CPU-second
            of the whole process tree (the per-core rate, which other load on the machine does not
            lower) and of the main process alone (its ceiling with workers); and the CPUs it takes
            at that rate to feed H200_VGG16_BF16_IMAGES_PER_S, the GPU step's measured rate.

Default --batch: 32 pairs (the demo config) for vgg_mini; for vgg16 2 pairs on CPU, 64 on GPU/TPU.
Other processes on the machine skew the numbers: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import queue as queue_lib
import re
import shutil
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from privjax import models
from privjax.cost import analysis as cost_analysis
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

# The rate the input pipeline must feed: privjax's VGG-16 train step (cut conv5_3, bf16, 64 pairs =
# 128 images per step) on one NVIDIA H200 with jax 0.11.2, "privjax train 4207.4 images/s" in
# benchmarks/results/h200_bf16.log (this script, commit f4cf39b).
H200_VGG16_BF16_IMAGES_PER_S = 4207.4

# The training config whose data set and preprocessing the pipeline is measured with, per model:
# an image_folder data set (the photo builders' PNGs, as CelebA and LFW are stored) of generated
# photos (benchmarks/make_photo_folder.py: identities, photos each) at the model's input size.
PIPELINE_CONFIGS = {
    'vgg16': 'configs/paper/vgg16.py:dataset=image_folder,siamese',
    'vgg_mini': 'configs/image_folder.py:siamese',
}
PIPELINE_PHOTOS = (60, 20)


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """The demo's Siamese settings (configs/default.py:siamese), hashable for compiled_steps."""

  lr: float = 1e-4
  head_lr_mult: float = 10.0
  b1: float = 0.9
  b2: float = 0.999

  def get(self, key: str, default=None):  # the optimizer config's ConfigDict.get (schedule...)
    return getattr(self, key, default)


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


def windows(runners: dict, count: int, seconds: float) -> tuple[dict[str, float], dict]:
  """Median seconds per iteration of each runner, and every window's; run(n) does n iterations.

  Each runner's window holds enough iterations for about `seconds`; the runners take turns, so
  window i of one runner and window i of another ran back to back (their ratio cancels most of a
  change in machine load between windows).
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
  return {name: statistics.median(t) for name, t in times.items()}, times


def window_ratios(times: dict) -> dict:
  """privjax's speed over the best PyTorch setting's, per timing window: median, min and max.

  In window i the best PyTorch setting is the faster of the torch runners in that window.
  """
  torch_names = [n for n in times if n.startswith('torch_')]
  if not torch_names or 'train' not in times:
    return {}
  ratios = [min(times[n][i] for n in torch_names) / t for i, t in enumerate(times['train'])]
  return {
      'best_torch_ratio_windows': ratios,
      'best_torch_ratio_median': statistics.median(ratios),
      'best_torch_ratio_min': min(ratios),
      'best_torch_ratio_max': max(ratios),
  }


def cpu_fp32_peak_gflops() -> float | None:
  """An estimate of the fp32 peak of the CPUs this process may use (Linux only).

  cores x nominal MHz (/proc/cpuinfo) x FLOP per cycle: 64 with AVX-512 (two 16-lane FMA units),
  32 with AVX2 FMA. Turbo clocks and SKUs with one AVX-512 FMA unit make this an approximation.
  """
  try:
    with open('/proc/cpuinfo') as f:
      info = f.read()
  except OSError:
    return None
  mhz = re.search(r'^cpu MHz\s*:\s*([0-9.]+)', info, re.M)
  flags = re.search(r'^flags\s*:(.*)$', info, re.M)
  if not mhz or not flags:
    return None
  flags = flags.group(1).split()
  per_cycle = 64 if 'avx512f' in flags else 32 if 'fma' in flags else 8
  return cpu_count() * float(mhz.group(1)) * 1e-3 * per_cycle


def flops_of(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float(analysis['flops']) if analysis and analysis.get('flops') else None


def random_pairs(batch: int, size: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, (batch, 2)).astype(np.int32)
  return {
      'image': rng.integers(0, 256, (batch, 2, size, size, 3), dtype=np.uint8),
      'label': labels,
      'same': (labels[:, 0] == labels[:, 1]).astype(np.float32),
  }


def placed_siamese_step(arch, cut, batch, dtype='float32'):
  """compiled_siamese_step for a fresh `arch` model cut at `cut`, its state replicated and a random
  batch of `batch` pairs sharded over every device: (mesh, graphdef, optimizer, defence, state,
  pairs, jitted train step)."""
  mesh = jax.make_mesh((jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  model = models.SplitModel(
      arch.name, cut, 2, rngs=nnx.Rngs(0), dtype=jnp.bfloat16 if dtype == 'bfloat16' else None
  )
  graphdef, tx, defence, state, train_step = compiled_siamese_step(model, mesh)
  state = jax.device_put(state, NamedSharding(mesh, P()))
  pairs = jax.device_put(random_pairs(batch, arch.image_size), NamedSharding(mesh, P('data')))
  return mesh, graphdef, tx, defence, state, pairs, train_step


def privjax_runners(arch, cut, batch, dtype) -> tuple[dict, dict]:
  """({compile_s, flops_per_step}, {'train': run, 'extract': run})."""
  mesh, graphdef, tx, defence, state, pairs, train_step = placed_siamese_step(
      arch, cut, batch, dtype
  )
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))

  start = time.perf_counter()
  compiled = train_step.lower(state, pairs).compile()
  out = {
      'compile_s': time.perf_counter() - start,
      'flops_per_step': flops_of(compiled),
      # 3x the textbook forward count of both branches' images (cost_analysis.textbook_flops).
      'textbook_flops_per_step': (
          3 * 2 * batch * sum(cost_analysis.textbook_flops(arch, 2).values())
      ),
  }
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
  out['textbook_tflops'] = info['textbook_flops_per_step'] / sec['train'] / 1e12
  peak = peak_flops(jax.devices()[0].device_kind)
  if peak and jax.default_backend() != 'cpu':
    # From the textbook count: XLA's GPU cost analysis leaves cuDNN's convolutions out.
    out['mfu'] = out['textbook_tflops'] * 1e12 / (peak * jax.device_count())
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
  from benchmarks import torch_reference

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


def _tree_cpu_seconds(pid: int) -> tuple[float, float]:
  """(CPU seconds of process `pid`, of it and all its descendants), from /proc (Linux)."""
  tick = os.sysconf('SC_CLK_TCK')
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
  total = own
  for tid in os.listdir(f'/proc/{pid}/task'):
    try:
      with open(f'/proc/{pid}/task/{tid}/children') as f:
        children = f.read().split()
    except FileNotFoundError:  # the thread ended
      continue
    for child in children:
      try:
        total += _tree_cpu_seconds(int(child))[1]
      except FileNotFoundError:  # the child ended
        pass
  return own, total


def _pipeline_config(arch_name: str, csv: str, data_dir: str):
  from privjax import config as config_lib

  path, arg = PIPELINE_CONFIGS[arch_name].split(':')
  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
  config = config_lib.config_module(os.path.join(root, path)).get_config(arg)
  config.dataset.builder_kwargs.csv = csv
  config.dataset.data_dir = data_dir
  return config


def _pipeline_child(queue, cpus, arch_name, csv, data_dir, batch, threads, workers, args):
  """Runs in a process of its own, pinned to `cpus`; puts its measurements on `queue`."""
  os.sched_setaffinity(0, cpus)
  # On a GPU, this process shares the chip with the benchmark's: no preallocation.
  os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'] = 'false'
  try:
    from privjax.data import pipeline
    from privjax.train import loop

    config = _pipeline_config(arch_name, csv, data_dir)
    split = pipeline.load_split(pipeline.get_builder(config.dataset), config.dataset.train_split)
    pre = pipeline.preprocess_from_config(config, train=True)
    pipeline.check_image_size(split, pre)
    sharding = NamedSharding(loop.data_mesh(), P('data'))
    host = pipeline.pair_batches(
        split, config.dataset.primary, batch, pre, seed=0, threads=threads, workers=workers
    )
    # The training loop's own path: host batches → global device arrays, 2 in flight.
    batches = loop.device_batches(host, sharding, batch, 2)
    start = time.perf_counter()
    for _ in range(4 * max(workers, 1)):  # starts the workers and fills the read-ahead buffers
      jax.block_until_ready(next(batches))
    warmup_s = time.perf_counter() - start
    rows = []
    for _ in range(args.windows):
      n, start, cpu = 0, time.perf_counter(), _tree_cpu_seconds(os.getpid())
      while time.perf_counter() - start < args.window_seconds:
        jax.block_until_ready(next(batches))
        n += 1
      wall = time.perf_counter() - start
      end = _tree_cpu_seconds(os.getpid())
      rows.append((2 * batch * n, wall, end[0] - cpu[0], end[1] - cpu[1]))
    host.close()  # stops grain's workers and frees their shared memory
    images, tree_cpu, main_cpu = (sum(r[i] for r in rows) for i in (0, 3, 2))
    queue.put(
        {
            'cpus': len(cpus),
            'workers': workers,
            'threads': threads,
            'images_per_s': statistics.median(r[0] / r[1] for r in rows),
            'images_per_s_windows': [r[0] / r[1] for r in rows],
            # /proc counts CPU time in clock ticks (10 ms): None when below one.
            'images_per_cpu_s': images / tree_cpu if tree_cpu else None,
            'main_images_per_cpu_s': images / main_cpu if main_cpu else None,
            'cpu_busy': tree_cpu / sum(r[1] for r in rows) / len(cpus),
            'warmup_s': warmup_s,
            'load': os.getloadavg(),
        }
    )
  except Exception as e:  # reported in the results, not a hung parent
    queue.put({'cpus': len(cpus), 'workers': workers, 'error': f'{type(e).__name__}: {e}'})


def prepare_pipeline_data(arch_name: str, data_dir: str) -> str:
  """Prepares the image_folder data set of generated photos at the model's input size (reused
  when prepared before: the data set is named by its CSV's content); returns the CSV's path."""
  import tempfile

  from benchmarks import make_photo_folder
  from privjax.data import pipeline

  folder = tempfile.mkdtemp(prefix='privjax-pipeline-photos-')
  csv = make_photo_folder.write_folder(folder, *PIPELINE_PHOTOS)
  pipeline.get_builder(_pipeline_config(arch_name, csv, data_dir).dataset)
  return csv


def bench_pipeline(arch_name: str, args) -> dict:
  """The training input pipeline per host CPU: one pinned process per (CPU count, workers)."""
  import multiprocessing

  try:
    csv = prepare_pipeline_data(arch_name, args.data_dir)
  except ImportError as e:
    return {'pipeline': f'skipped ({e})'}
  try:
    config = _pipeline_config(arch_name, csv, args.data_dir)
    threads = args.data_threads or config.data_threads
    usable = sorted(os.sched_getaffinity(0))
    runs = []
    for count in (int(c) for c in args.pipeline_cpus.split(',')):
      if count > len(usable):
        runs.append({'cpus': count, 'error': f'only {len(usable)} CPUs usable'})
        continue
      # Threads only (the config's data_threads), then one worker process per CPU.
      for workers in (0, count):
        per_worker = threads if not workers else max(1, threads // workers)
        ctx = multiprocessing.get_context('spawn')
        queue = ctx.Queue()
        child = ctx.Process(
            target=_pipeline_child,
            args=(queue, usable[-count:], arch_name, csv, args.data_dir, args.pipeline_batch)
            + (per_worker, workers, args),
        )
        child.start()
        result = None
        while result is None and (child.is_alive() or not queue.empty()):
          try:
            result = queue.get(timeout=5)
          except queue_lib.Empty:
            pass
        child.join()
        runs.append(result or {'cpus': count, 'workers': workers, 'error': 'the process died'})
        print(json.dumps({'pipeline_run': runs[-1]}), flush=True)
  finally:
    shutil.rmtree(os.path.dirname(csv))  # the photos: the prepared data set is what is reused
  out = {
      'pipeline_runs': runs,
      'pipeline_batch_pairs': args.pipeline_batch,
      'pipeline_data': (
          f'image_folder of {PIPELINE_PHOTOS[0]}x{PIPELINE_PHOTOS[1]} generated photos'
      ),
      'pipeline_config': PIPELINE_CONFIGS[arch_name],
      'pipeline_gpu_rate': H200_VGG16_BF16_IMAGES_PER_S,
  }
  for r in runs:
    if r.get('images_per_cpu_s'):
      r['cpus_for_gpu_rate'] = H200_VGG16_BF16_IMAGES_PER_S / r['images_per_cpu_s']
  return out


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
  parser.add_argument(
      '--skip',
      default='',
      help='comma-separated: step (the train steps and extractor),attack,torch,pipeline',
  )
  parser.add_argument('--data-dir', default='', help='TFDS data dir (default: TFDS default)')
  parser.add_argument(
      '--data-threads', type=int, default=0, help="pipeline threads (default: the config's)"
  )
  parser.add_argument('--pipeline-cpus', default='1,2', help='CPU counts to pin the pipeline to')
  parser.add_argument('--pipeline-batch', type=int, default=64, help='pairs per pipeline batch')
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
    if 'step' not in skip:  # the pipeline alone: --skip step,attack
      info, runners = privjax_runners(arch, cut, batch, args.dtype)
      if 'torch' not in skip:
        facts, more = torch_runners(arch, cut, batch, args.dtype, args)
        row.update(facts)
        runners.update(more)
      sec, times = windows(runners, args.windows, args.window_seconds)
      row.update(privjax_rates(info, sec, batch))
      row.update(window_ratios(times))
      if jax.default_backend() == 'cpu' and row.get('achieved_tflops'):
        peak = cpu_fp32_peak_gflops()
        if peak:
          row['cpu_fp32_peak_gflops'] = peak
          row['cpu_fp32_peak_fraction'] = row['achieved_tflops'] * 1e3 / peak
      for key in sec:
        if key.startswith('torch_'):
          row[f'{key}_step_ms'] = 1e3 * sec[key]
          row[f'{key}_images_per_s'] = 2 * batch / sec[key]
      print(json.dumps(row), flush=True)
    for part, fn in (
        ('pipeline', lambda: bench_pipeline(name, args)),
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
    if 'train_images_per_s' not in r:  # --skip step
      lines.append(f"{r['model']}:")
    else:
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
      if r.get('textbook_tflops'):
        perf += f"  {r['textbook_tflops'] * 1e3:8.1f} GFLOP/s by the textbook count"
      if r.get('mfu') is not None:
        perf += f"  MFU {100 * r['mfu']:.1f}% of bf16 peak (textbook count)"
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
      if 'best_torch_ratio_median' in r:
        lines.append(
            f"  per window: median {r['best_torch_ratio_median']:.2f}, "
            f"range {r['best_torch_ratio_min']:.2f}-{r['best_torch_ratio_max']:.2f} over "
            f"{len(r['best_torch_ratio_windows'])} windows"
        )
      if 'cpu_fp32_peak_fraction' in r:
        lines.append(
            f"  {100 * r['cpu_fp32_peak_fraction']:.0f}% of an estimated fp32 peak of "
            f"{r['cpu_fp32_peak_gflops']:.0f} GFLOP/s"
        )
    if 'pipeline_runs' in r:
      lines.append(
          f"  input pipeline ({r['pipeline_config']}, {r['pipeline_data']}, "
          f"{r['pipeline_batch_pairs']} pairs per batch, to the device):"
      )
      for run in r['pipeline_runs']:
        how = f"{run['cpus']} CPU{'s' if run['cpus'] > 1 else ''}, " + (
            f"{run['workers']} worker process{'es' if run['workers'] > 1 else ''}"
            if run.get('workers')
            else 'threads only'
        )
        if 'error' in run:
          lines.append(f'    {how:34s} {run["error"]}')
          continue
        per_cpu, main = run['images_per_cpu_s'], run['main_images_per_cpu_s']
        lines.append(
            f"    {how:34s} {run['images_per_s']:7.1f} images/s  "
            f"{f'{per_cpu:6.1f}' if per_cpu else '     ?'} images per CPU-second "
            f"(main process alone {f'{main:6.1f}' if main else '     ?'})  "
            f"CPUs busy {100 * run['cpu_busy']:3.0f}%  "
            + (
                f"{run['cpus_for_gpu_rate']:5.1f} CPUs for {r['pipeline_gpu_rate']:.0f} images/s"
                if per_cpu
                else ''
            )
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
