"""Privacy–accuracy plots over the noise sweep, one curve per run and transform (PNG, matplotlib Agg).

Must not import jax: it reads report dicts only.
"""

from __future__ import annotations

# The object API (no pyplot) draws off-screen without switching the caller's backend, so a
# notebook's inline plots keep working after a report is written.
from matplotlib.figure import Figure

from privjax import paths


def privacy_accuracy_plots(reports: list[dict], out_dir: str, names: list[str] | None = None):
  names = names or [f'{r["mode"]} ({r["cut"]})' for r in reports]
  paths.as_path(out_dir).mkdir(parents=True, exist_ok=True)  # a local folder or a URI
  secret = reports[0]['secrets'][0]
  # (label, x value, x standard error or None) per sweep entry.
  panels = [
      (
          f'{secret} top-1 of the strongest attacker (%, ± standard error)',
          lambda e: 100 * e['attacks'][secret]['top1'],
          lambda e: 100 * e['attacks'][secret].get('top1_se', 0.0),
      ),
      (
          'rank privacy: mean normalised rank',
          lambda e: e['rank_privacy']['mean_normalized_rank'],
          None,
      ),
  ]
  fig = Figure(figsize=(6 * len(panels), 4.5))
  axes = fig.subplots(1, len(panels))
  for ax, (label, fn, err) in zip(axes, panels):
    for report, name in zip(reports, names):
      for transform in dict.fromkeys(e['transform'] for e in report['sweep']):
        entries = [e for e in report['sweep'] if e['transform'] == transform]
        try:
          xs = [fn(e) for e in entries]
        except KeyError:
          continue
        ys = [100 * e['primary_head_accuracy'] for e in entries]
        xerr = None if err is None else [err(e) for e in entries]
        ax.errorbar(xs, ys, xerr=xerr, marker='o', capsize=3, label=f'{name}, {transform}')
        for x, y, e in zip(xs, ys, entries):
          ax.annotate(f'{e["noise_variance"]:g}', (x, y), fontsize=7, alpha=0.7)
    ax.set_xlabel(label)
    ax.set_ylabel(f'{reports[0]["primary"]} accuracy of the cloud head (%)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle('Privacy vs accuracy over the noise sweep (labels: noise σ²)')
  fig.tight_layout()
  path = paths.join(out_dir, 'privacy_accuracy.png')
  with paths.as_path(path).open('wb') as f:
    fig.savefig(f, format='png', dpi=110)
  return {'privacy_accuracy_plot': path}
