"""Privacy–accuracy plots over the noise sweep, one curve per run and transform (PNG, matplotlib Agg).

Must not import jax: it reads report dicts only.
"""

from __future__ import annotations

# The object API (no pyplot) draws off-screen without switching the caller's backend, so a
# notebook's inline plots keep working after a report is written.
from matplotlib.figure import Figure

from privjax import paths
from privjax.metrics import results


def privacy_accuracy_plots(reports: list[dict], out_dir: str, names: list[str] | None = None):
  """privacy_accuracy.png: per secret, the strongest attack's top-1 (± se) against the best
  utility, one curve per run and transform over the noise variances."""
  names = names or [f'{r["defence"]["name"]} ({r["cut"]})' for r in reports]
  paths.as_path(out_dir).mkdir(parents=True, exist_ok=True)  # a local folder or a URI
  secrets = reports[0]['secrets']
  primary = reports[0]['primary']
  fig = Figure(figsize=(6 * len(secrets), 4.5))
  axes = fig.subplots(1, len(secrets), squeeze=False)[0]
  for ax, secret in zip(axes, secrets):
    for report, name in zip(reports, names):
      for transform in dict.fromkeys(e['transform'] for e in report['settings']):
        xs, ys, xerr, notes = [], [], [], []
        for e in report['settings']:
          leak = results.best(e['metrics'], 'leak', secret=secret)
          utility = results.best(e['metrics'], 'utility', uploads=None)
          if e['transform'] != transform or leak is None or utility is None:
            continue
          xs.append(leak[1].value)
          xerr.append(leak[1].se or 0.0)
          ys.append(utility[1].value)
          notes.append(f'{e["noise_variance"]:g}')
        if not xs:
          continue
        ax.errorbar(xs, ys, xerr=xerr, marker='o', capsize=3, label=f'{name}, {transform}')
        for x, y, note in zip(xs, ys, notes):
          ax.annotate(note, (x, y), fontsize=7, alpha=0.7)
    ax.set_xlabel(f'{secret} top-1 of the strongest attack (%, ± standard error)')
    ax.set_ylabel(f'{primary} accuracy, best utility (%)')
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.suptitle('Privacy vs accuracy over the noise sweep (labels: noise σ²)')
  fig.tight_layout()
  path = paths.join(out_dir, 'privacy_accuracy.png')
  with paths.as_path(path).open('wb') as f:
    fig.savefig(f, format='png', dpi=110)
  return {'privacy_accuracy_plot': path}
