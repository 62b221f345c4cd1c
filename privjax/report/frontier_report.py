"""The frontier's result (privjax.experiments.frontier) rendered: a markdown table and a plot.

Plots go through matplotlib's `Figure` API (no pyplot, no backend switch). Must not import jax.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from privjax import paths


def _f(x, digits=1):
  return '—' if x is None else f'{x:.{digits}f}'


def markdown(result: dict) -> str:
  primary, secret = result['primary'], result['secret']
  lines = [
      f'**Privacy-utility frontier ({"quick" if result["quick"] else "full"})**.',
      '',
      f'Primary task **{primary}** (majority rate {_f(result["primary_majority"])}%), secret '
      f'**{secret}**. Accuracies in %, ± binomial standard error. Identity: the strongest attacker '
      'over every family at that setting.',
      '',
      '**Runs** (train s: the first completed training; on a CPU every run after the first trains '
      'beside an evaluation, privjax.experiments.runner)',
      '',
      f'| run | defence | strength | train s | device params | device FLOPs/image | {primary} '
      f'(full model) | {primary}, raw-pixel attacker | {secret} top-1, raw pixels |',
      '|---|---|---|---|---|---|---|---|---|',
  ]
  for name, r in result['runs'].items():
    strength = '—' if r['strength'] is None else f'{r["strength"]:g}'
    lines.append(
        f'| {name} | {r["defence"]} | {strength} | '
        f'{r["train_seconds"]:.0f} | {r["device_params"]} | {r["device_flops_per_image"]} | '
        f'{_f(r["primary_accuracy_full_model"])} | {_f(r.get("pixel_primary_top1"))} | '
        f'{_f(r["pixel_identity_top1"])} |'
    )
  lines += [
      '',
      '**Points** (one per run, transform and noise variance; ✓ = Pareto front)',
      '',
      f'| run | transform | σ² | {primary} (cloud head) | {secret} top-1 | attacker | SSIM | '
      'front |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for p in sorted(result['points'], key=lambda p: (-p['primary_accuracy'], p['identity_top1'])):
    lines.append(
        f'| {p["run"]} | {p["transform"]} | {p["noise_variance"]:g} | '
        f'{_f(p["primary_accuracy"])} | {_f(p["identity_top1"])} ± {_f(p["identity_top1_se"])} | '
        f'{p["identity_attacker"]} | {_f(p["ssim"], 3)} | {"✓" if p["pareto"] else ""} |'
    )
  return '\n'.join(lines) + '\n'


def plot(result: dict, path: str) -> str:
  fig = Figure(figsize=(7, 5))
  ax = fig.subplots()
  defences = sorted({p['defence'] for p in result['points']})
  for i, d in enumerate(defences):
    pts = [p for p in result['points'] if p['defence'] == d]
    ax.scatter(
        [p['identity_top1'] for p in pts],
        [p['primary_accuracy'] for p in pts],
        label=d,
        marker='os^vDP*X'[i % 8],
        alpha=0.8,
    )
  front = sorted((p for p in result['points'] if p['pareto']), key=lambda p: p['identity_top1'])
  ax.plot(
      [p['identity_top1'] for p in front],
      [p['primary_accuracy'] for p in front],
      'k--',
      lw=1,
      label='Pareto front',
  )
  ax.axhline(result['primary_majority'], color='grey', lw=0.8, ls=':', label='majority rate')
  ax.set_xlabel(f'{result["secret"]} top-1 of the strongest attacker (%)')
  ax.set_ylabel(f'{result["primary"]} accuracy, cloud head (%)')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  with paths.as_path(path).open('wb') as f:  # `path` may be a URI (privjax.paths)
    fig.savefig(f, format='png', dpi=120)
  return path
