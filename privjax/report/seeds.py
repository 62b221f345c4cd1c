"""Mean ± sd over training seeds of evaluation reports: one row per (run, transform, noise).

Used by `privjax reproduce --seeds` (its `compare_seeds.md`) and `benchmarks/seed_table.py` (tables
over run directories made by separate commands). The best primary accuracy the cloud gets and the
strongest attack's top-1 on each secret (%), mean ± sample sd over the seeds, and each seed's
values with the attacker that was strongest. With several evaluations of one run (`names`), the
strongest attacker is taken over all of them (privacy is judged against the strongest attacker run
on that run), and a fit that hit its iteration cap is marked †.

Reads report dicts (and, in `load_reports`, report.json files); never computes anything but the
mean and sd.
"""

from __future__ import annotations

import os
import statistics

from privjax.errors import EvalError
from privjax.metrics import results
from privjax.report import tables

# per_seed: one dict per seed, run -> [(eval name, report dict), ...] (the first name's report gives
# the rows and the primary accuracy).
PerSeed = list[dict[str, list[tuple[str, dict]]]]


def load_reports(dirs, runs, names) -> PerSeed:
  """The report of evaluation `<name>` of `<dir>/<run>` at its newest step
  (`<dir>/<run>/eval/<name>/step_<S>/report.json`) for every seed directory in `dirs`, run and
  name."""
  per_seed = []
  for d in dirs:
    seed = {}
    for run in runs:
      seed[run] = []
      for n in names:
        folder = os.path.join(d, run, 'eval', n)
        newest = tables.newest_step_dir(folder)
        if newest is None:
          raise EvalError(f'no report in {folder}: evaluate that run with --config.name={n} first')
        seed[run].append((n, tables.load_report(newest)))
    per_seed.append(seed)
  return per_seed


def _entry(report, transform, noise):
  return next(
      (
          e
          for e in report['settings']
          if (e['transform'], e['noise_variance']) == (transform, noise)
      ),
      None,
  )


def strongest(reports, secret, transform, noise):
  """(top-1 in %, 'metric label[, eval name]', without a caveat) of the strongest attack on
  `secret` over `reports` [(name, report)] at the setting, or None where none attacked it there."""
  best = None
  for name, report in reports:
    e = _entry(report, transform, noise)
    found = None if e is None else results.best(e['metrics'], 'leak', secret=secret)
    if found is None:
      continue
    metric_name, m = found
    label = m.label or metric_name
    label = label if len(reports) == 1 else f'{label}, {name}'
    if best is None or m.value > best[0]:
      best = (m.value, label, not m.note.startswith('not converged'))
  return best


def _mean_sd(values) -> str:
  if any(v is None for v in values):
    return '–'
  sd = statistics.stdev(values) if len(values) > 1 else float('nan')
  return f'{statistics.mean(values):.1f} ± {sd:.1f}'


def table(per_seed: PerSeed, runs, secrets=('identity',)) -> str:
  """The markdown table (see the module docstring) of `per_seed` (at least two seeds), one row per
  setting of each run's first report; a setting missing from one evaluation of a run is taken from
  the others; a secret no evaluation attacked at a setting shows '–'."""
  if len(per_seed) < 2:
    raise EvalError(f'a mean ± sd over seeds needs at least two seeds, got {len(per_seed)}')
  names = [n for n, _ in per_seed[0][runs[0]]]
  primary = per_seed[0][runs[0]][0][1]['primary']
  over = f' over the evaluations {", ".join(names)}' if len(names) > 1 else ''
  what = ', '.join(secrets)
  lines = [
      f'Mean ± sd over {len(per_seed)} training seeds; accuracies in %; {what}: the strongest '
      f'attacker at that setting{over} († marks an attacker whose fit hit its iteration cap).',
      '',
      f'| run | transform | σ² | {primary} (best utility) | '
      + ''.join(f'{s} top-1 | ' for s in secrets)
      + f'per seed: {" / ".join((primary, *secrets))} (attacker) |',
      '|---|---|---|---|' + '---|' * len(secrets) + '---|',
  ]
  for run in runs:
    for entry in per_seed[0][run][0][1]['settings']:
      t, v = entry['transform'], entry['noise_variance']
      head, tops, cells = [], {s: [] for s in secrets}, []
      for seed in per_seed:
        reports = seed[run]
        utility = results.best(_entry(reports[0][1], t, v)['metrics'], 'utility', uploads=None)
        head.append(utility[1].value)
        values, who = [f'{head[-1]:.1f}'], []
        for s in secrets:
          best = strongest(reports, s, t, v)
          tops[s].append(None if best is None else best[0])
          values.append('–' if best is None else f'{best[0]:.1f}')
          if best is not None:
            who.append(best[1] + ('' if best[2] else ' †'))
        cells.append(' / '.join(values) + (f' ({" / ".join(who)})' if who else ''))
      lines.append(
          f'| {run} | {t} | {v:g} | {_mean_sd(head)} | '
          + ''.join(f'{_mean_sd(tops[s])} | ' for s in secrets)
          + f'{"; ".join(cells)} |'
      )
  return '\n'.join(lines) + '\n'
