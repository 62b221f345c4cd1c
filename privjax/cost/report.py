"""The cost table as files: cost.json, cost.md (markdown) and cost.png (plot).

The plot shows device FLOPs and upload bytes per cut and, given evaluation points, the cloud's
primary accuracy and the identity attacker's top-1 against those costs.

Must not import jax: it renders the rows that `privjax.cost.analysis` measured.
"""

from __future__ import annotations

import json
import os

# The object API (no pyplot) draws off-screen without switching the caller's backend, so a
# notebook's inline plots keep working after a table is written.
from matplotlib.figure import Figure


def format_si(x, unit='') -> str:
  if x is None:
    return '—'
  for factor, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(x) >= factor:
      return f'{x / factor:.3g} {prefix}{unit}'.rstrip()
  return f'{x:.3g} {unit}'.rstrip()


def format_bytes(x) -> str:
  if x is None:
    return '—'
  for factor, unit in ((2**30, 'GiB'), (2**20, 'MiB'), (2**10, 'KiB')):
    if x >= factor:
      return f'{x / factor:.3g} {unit}'
  return f'{x} B'


def markdown(rows: list[dict], meta: dict, points: list[dict]) -> str:
  k = meta['pca_k']
  head = [
      'cut',
      'features',
      'upload f32 / f16 / int8',
      f'upload PCA-{k}',
      'device params',
      'device FLOPs',
      'peak activations',
      'latency ms (p90)',
      f'PCA-{k} params / FLOPs',
      'cloud params',
      'cloud FLOPs',
  ]
  lines = [
      f'# Cost per cut: {meta["arch"]} ({meta["image_size"]}×{meta["image_size"]} input, '
      f'batch 1, {meta["dtype"]})',
      '',
      f'Machine: {meta["machine"]["processor"]}, {meta["machine"]["cpu_count"]} CPU threads '
      f'visible, jax {meta["machine"]["jax"]} on {meta["machine"]["platform"]}. Random '
      f'weights; latency = median (90th percentile) of {meta["repeats"]} runs after '
      "compilation. FLOPs from XLA's cost analysis (the device side includes input "
      "normalisation). Peak activations: the larger of XLA's temp + output buffers and (*) "
      'the largest single-layer input + output from shapes (XLA does not see buffers inside '
      'library fusions). int8 excludes the quantisation scale.',
      '',
      '| ' + ' | '.join(head) + ' |',
      '|' + '---|' * len(head),
  ]
  for r in rows:
    star = '' if r['peak_activation_source'] == 'xla' else ' *'
    lines.append(
        '| '
        + ' | '.join(
            [
                r['cut'],
                '×'.join(map(str, r['feature_shape'])),
                ' / '.join(
                    format_bytes(r[f'upload_{t}_bytes']) for t in ('float32', 'float16', 'int8')
                ),
                format_bytes(r['upload_pca_bytes']),
                f'{format_si(r["extractor_params"])} ({format_bytes(r["extractor_param_bytes"])})',
                format_si(r['extractor_flops']),
                format_bytes(r['peak_activation_bytes']) + star,
                f'{r["latency_ms"]:.3g} ({r["latency_p90_ms"]:.3g})',
                f'{format_si(r["pca_params"])} / {format_si(r["pca_flops"])}',
                f'{format_si(r["head_params"])} ({format_bytes(r["head_param_bytes"])})',
                format_si(r['head_flops']),
            ]
        )
        + ' |'
    )
  if points:
    lines += ['', '| run | cut | primary accuracy (%) | identity top-1 (%) |', '|---|---|---|---|']
    lines += [
        f'| {p["run"]} | {p["cut"]} | {p["primary_accuracy"]:.1f} | ' f'{p["identity_top1"]:.1f} |'
        for p in points
    ]
  return '\n'.join(lines) + '\n'


def plot(rows: list[dict], points: list[dict], path: str) -> str:
  by_cut = {r['cut']: r for r in rows}
  points = [p for p in points if p['cut'] in by_cut]
  panels = 3 if points else 1
  fig = Figure(figsize=(6 * panels, 4.5))
  axes = fig.subplots(1, panels, squeeze=False)
  ax = axes[0][0]
  cuts = [r['cut'] for r in rows]
  ax.plot(cuts, [r['extractor_flops'] for r in rows], 'o-', color='C0', label='device FLOPs')
  ax.set_yscale('log')
  ax.set_ylabel('device FLOPs per image', color='C0')
  ax.tick_params(axis='x', rotation=45)
  twin = ax.twinx()
  twin.plot(
      cuts, [r['upload_float32_bytes'] for r in rows], 's--', color='C1', label='upload (float32)'
  )
  twin.set_yscale('log')
  twin.set_ylabel('upload bytes per image (float32)', color='C1')
  ax.set_title('cost per cut')
  ax.grid(alpha=0.3)
  against = (
      (
          ('extractor_flops', 'device FLOPs per image'),
          ('upload_float32_bytes', 'upload bytes per image (float32)'),
      )
      if points
      else ()
  )
  for ax, (key, label) in zip(axes[0][1:], against):
    for metric, marker, name in (
        ('primary_accuracy', 'o', f'{points[0]["primary"]} accuracy'),
        ('identity_top1', 'x', 'identity top-1 (strongest attack)'),
    ):
      ax.scatter(
          [by_cut[p['cut']][key] for p in points],
          [p[metric] for p in points],
          marker=marker,
          label=name,
      )
      for p in points:
        ax.annotate(
            f'{p["cut"]} {p["defence"]}',
            (by_cut[p['cut']][key], p[metric]),
            fontsize=7,
            alpha=0.7,
        )
    ax.set_xscale('log')
    ax.set_xlabel(label)
    ax.set_ylabel('%')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return path


def write(rows: list[dict], meta: dict, points: list[dict], out_dir: str) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  paths = {
      'json': os.path.join(out_dir, 'cost.json'),
      'md': os.path.join(out_dir, 'cost.md'),
      'png': os.path.join(out_dir, 'cost.png'),
  }
  with open(paths['json'], 'w') as f:
    json.dump({'meta': meta, 'rows': rows, 'evaluations': points}, f, indent=2)
  with open(paths['md'], 'w') as f:
    f.write(markdown(rows, meta, points))
  plot(rows, points, paths['png'])
  return paths
