r"""The speed tables of docs/speed.md, rendered from `benchmarks/train_step.py`'s JSON output.

  python -m benchmarks.speed_table cpu benchmarks/results/cpu_2core_vgg_mini.json \
      --out benchmarks/results/speed_cpu_2core.md
  python -m benchmarks.speed_table gpu benchmarks/results/h200_bf16.json \
      --out benchmarks/results/speed_h200.md

`cpu`: one table per model, privjax's step against XLA's default options and the PyTorch settings
(ratios are privjax's images/s over the row's), and the input pipeline against the step. `gpu`: one
row per model. Every figure is read from the JSON; nothing is typed in.
"""

from __future__ import annotations

import argparse
import json


def _f(x, digits=1):
  return '' if x is None else f'{x:.{digits}f}'


def cpu_table(record: dict) -> str:
  h, out = record['header'], []
  for r in record['results']:
    ours = r['train_images_per_s']
    load = h.get('load_before', [None])[0]
    out += [
        f'{r["model"]} at `{r["cut"]}`, {r["batch_pairs"]} pairs, {r["dtype"]}; {h["cpus"]} CPU '
        f'cores, jax {h["jax"]}, torch {r.get("torch_version", "not installed")}, load average '
        f'{_f(load, 2)} at the start.',
        '',
        '| setting | images/s | ms/step | privjax / this |',
        '|---|---|---|---|',
        f'| privjax train step | {_f(ours)} | {_f(r["step_ms"])} | |',
    ]
    rows = [("privjax train step, XLA's default options", 'xla_defaults_images_per_s', None)]
    threads = r.get('torch_threads')
    rows += [
        (
            f'PyTorch eager, channels-last, {threads} threads',
            'torch_eager_images_per_s',
            'torch_eager_step_ms',
        ),
        ('PyTorch `torch.compile`', 'torch_compile_images_per_s', 'torch_compile_step_ms'),
    ]
    for name, rate, ms in rows:
      if r.get(rate):
        step_ms = _f(r.get(ms)) if ms else _f(2 * r['batch_pairs'] / r[rate] * 1e3)
        out.append(f'| {name} | {_f(r[rate])} | {step_ms} | {ours / r[rate]:.2f} |')
    if r.get('pipeline_images_per_s'):
      out.append(
          f'| input pipeline ({r.get("pipeline_threads", "?")} threads) | '
          f'{_f(r["pipeline_images_per_s"])} | | pipeline / step = '
          f'{r["pipeline_images_per_s"] / ours:.2f} |'
      )
    for run in r.get('pipeline_runs', []):  # train_step.py's per-CPU pipeline runs
      if 'error' in run:
        continue
      how = f'{run["cpus"]} CPU(s), ' + (
          f'{run["workers"]} worker process(es)' if run.get('workers') else 'threads only'
      )
      out.append(
          f'| input pipeline, {how} | {_f(run["images_per_s"])} | | '
          f'{_f(run["images_per_cpu_s"], 0)} images per CPU-second |'
      )
    out += [
        '',
        f'Feature extraction {_f(r["extract_images_per_s"])} images/s; the step achieves '
        f'{r["achieved_tflops"] * 1e3:.1f} GFLOP/s (XLA\'s cost analysis)'
        + (
            f', {100 * r["cpu_fp32_peak_fraction"]:.0f}% of an estimated fp32 peak of '
            f'{r["cpu_fp32_peak_gflops"]:.0f} GFLOP/s (cores × nominal clock × 64 FLOP/cycle '
            'with AVX-512).'
            if r.get('cpu_fp32_peak_fraction')
            else '.'
        ),
    ]
    if r.get('best_torch_ratio_windows'):
      out.append(
          f'privjax / best PyTorch setting per timing window (the settings take turns, window by '
          f'window): median {r["best_torch_ratio_median"]:.2f}, range '
          f'{r["best_torch_ratio_min"]:.2f}–{r["best_torch_ratio_max"]:.2f} over '
          f'{len(r["best_torch_ratio_windows"])} windows.'
      )
    out.append('')
  return '\n'.join(out).rstrip('\n') + '\n'


def gpu_table(record: dict) -> str:
  h = record['header']
  r0 = record['results'][0]
  out = [
      f'{h["device_kind"]}, jax {h["jax"]}, torch {r0.get("torch_version", "not installed")}; '
      f'{r0["batch_pairs"]} pairs, {r0["dtype"]}.',
      '',
      '| model | privjax train | torch eager | torch.compile | privjax / torch.compile | '
      'privjax extract |',
      '|---|---|---|---|---|---|',
  ]
  for r in record['results']:
    comp = r.get('torch_compile_images_per_s')
    out.append(
        f'| {r["model"]} | {r["train_images_per_s"]:.0f} images/s | '
        f'{_f(r.get("torch_eager_images_per_s"), 0)} images/s | {_f(comp, 0)} images/s | '
        f'{r["train_images_per_s"] / comp:.2f} | {r["extract_images_per_s"]:.0f} images/s |'
        if comp
        else f'| {r["model"]} | {r["train_images_per_s"]:.0f} images/s | | | | '
        f'{r["extract_images_per_s"]:.0f} images/s |'
    )
  return '\n'.join(out) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('kind', choices=('cpu', 'gpu'))
  parser.add_argument('json')
  parser.add_argument('--out', default=None)
  args = parser.parse_args()
  with open(args.json) as f:
    record = json.load(f)
  text = (cpu_table if args.kind == 'cpu' else gpu_table)(record)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  print(text, end='')


if __name__ == '__main__':
  main()
