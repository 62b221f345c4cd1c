"""Where the training step's time goes: XLA's profiler over the step that train_step.py times.

    taskset -c 0 python -m benchmarks.step_profile [--model vgg_mini] [--steps 10] [--out PATH]

Compiles the same step as benchmarks/train_step.py (privjax.train.step.compiled_steps with the
demo's Siamese objective, random uint8 pairs on the device), runs --steps steps under
jax.profiler.trace, and sums the duration of every executed HLO instruction (an XLA:CPU thunk)
by instruction. Run it on one core (taskset): with several, the thunks overlap and a convolution's
Eigen worker tasks carry no names, so the per-instruction times no longer add up to the step.
Prints (and with --out writes) a markdown table: milliseconds per step by kind (convolutions,
transposes the compiler inserted, matrix products, other fusions) and the largest instructions.
CPU only: on a GPU, per-kernel time needs the device's own trace.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

import jax

from benchmarks import train_step as bench
from privjax import models

_KINDS = (  # (kind, pattern on the instruction's name), first match wins
    ('convolution', r'^(conv_general_dilated|convolution)(\.\d+)?$'),
    ('transpose (inserted layout change)', r'^(transpose|copy)'),
    ('matrix product', r'^dot'),
)


def kind_of(name: str) -> str:
  return next((kind for kind, pattern in _KINDS if re.match(pattern, name)), 'other fusion')


def profile(model_name: str, steps: int) -> tuple[dict[str, float], dict[str, str], float]:
  """({instruction: ms per step}, {instruction: result shape}, wall ms per step)."""
  arch = models.get_architecture(model_name)
  *_, state, pairs, train_step = bench.placed_siamese_step(arch, arch.default_cut, 32)
  compiled = train_step.lower(state, pairs).compile()
  shapes = dict(re.findall(r'^\s*(?:ROOT )?%(\S+) = (\S+)', compiled.as_text(), re.M))
  for _ in range(3):
    state, metrics = compiled(state, pairs)
  jax.block_until_ready((state, metrics))
  with tempfile.TemporaryDirectory() as trace_dir:
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        state, metrics = compiled(state, pairs)
      jax.block_until_ready((state, metrics))
    wall = (time.perf_counter() - start) / steps * 1e3
    (path,) = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
  per_op = collections.defaultdict(float)
  for plane in data.planes:
    for line in plane.lines:
      if 'XLAEigen' not in line.name:  # XLA:CPU's worker threads run the thunks
        continue
      for event in line.events:
        if event.name in shapes:
          per_op[event.name] += event.duration_ns / 1e6 / steps
  return dict(per_op), shapes, wall


def render(model_name: str, per_op, shapes, wall, steps: int, top: int) -> str:
  total = sum(per_op.values())
  by_kind = collections.Counter()
  for name, ms in per_op.items():
    by_kind[kind_of(name)] += ms
  lines = [
      f'{model_name} training step (32 pairs, float32), {steps} steps under jax.profiler.trace on '
      f'{len(os.sched_getaffinity(0))} CPU(s), jax {jax.__version__}: {wall:.1f} ms per step wall '
      f'(with the profiler), {total:.1f} ms in named XLA instructions.',
      '',
      '| kind | ms per step | share |',
      '|---|---|---|',
  ]
  lines += [f'| {k} | {ms:.1f} | {ms / total:.0%} |' for k, ms in by_kind.most_common()]
  lines += [
      '',
      f'The {top} largest instructions (`conv_general_dilated.N`: forward convolutions; '
      '`convolution.N`: the gradients XLA derived from them):',
      '',
  ]
  lines += ['| instruction | result | ms per step |']
  lines += ['|---|---|---|']
  for name, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:top]:
    lines.append(f'| `{name}` | `{shapes[name].split("{")[0]}` | {ms:.2f} |')
  return '\n'.join(lines) + '\n'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model', default='vgg_mini')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--top', type=int, default=12)
  parser.add_argument('--out', default='')
  args = parser.parse_args(argv)
  if jax.default_backend() != 'cpu':
    sys.exit('step_profile.py: CPU only (per-kernel GPU time needs the device trace)')
  per_op, shapes, wall = profile(args.model, args.steps)
  table = render(args.model, per_op, shapes, wall, args.steps, args.top)
  print(table)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(table)


if __name__ == '__main__':
  main()
