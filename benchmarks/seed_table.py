r"""Mean ± sd over training seeds of evaluation reports: one row per (run, transform, noise).

  python benchmarks/seed_table.py --name target_full,target runs/frontier_lfw_quick \
      runs/lfw_seeds/seed1 runs/lfw_seeds/seed2 --runs none,siamese_1 \
      [--out benchmarks/results/lfw_target_seeds.md]

Reads `<dir>/<run>/eval/<name>/report.json` for every seed directory, run and evaluation name;
reports the cloud head's primary accuracy and the strongest identity attacker's top-1 (%), mean ±
sample sd over the seeds, and each seed's values with the attacker that was strongest. With several
names, the strongest attacker is taken over all of those evaluations (privacy is judged against the
strongest attacker run on that run), and a fit that hit its iteration cap is marked †.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics


def _strongest(reports, secret, transform, noise):
  """(top-1 in %, 'family[ (eval name)]', converged) of the strongest attacker over `reports`."""
  best = None
  for name, report in reports:
    for e in report['sweep']:
      if (e['transform'], e['noise_variance']) != (transform, noise):
        continue
      attack = e['attacks'][secret]
      family = attack['strongest']
      record = attack['families'][family]
      label = family if len(reports) == 1 else f'{family}, {name}'
      if best is None or attack['top1'] > best[0] / 100:
        best = (100 * attack['top1'], label, record.get('converged', True) is not False)
  if best is None:
    raise SystemExit(f'no report has the setting {transform}, σ² = {noise}')
  return best


def table(dirs, runs, names, secret='identity') -> str:
  """One row per (run, transform, noise) of the first report; identity is the strongest attacker
  over every evaluation in `names` (a setting missing from one of them is taken from the others)."""
  over = f' over the evaluations {", ".join(names)}' if len(names) > 1 else ''
  lines = [
      f'Mean ± sd over {len(dirs)} training seeds; accuracies in %; identity: the strongest '
      f'attacker at that setting{over} († marks an attacker whose fit hit its iteration cap).',
      '',
      '| run | transform | σ² | gender (cloud head) | identity top-1 | per seed: gender / identity '
      '(attacker) |',
      '|---|---|---|---|---|---|',
  ]
  for run in runs:
    per_seed = [
        [(n, json.load(open(os.path.join(d, run, 'eval', n, 'report.json')))) for n in names]
        for d in dirs
    ]
    for entry in per_seed[0][0][1]['sweep']:
      t, v = entry['transform'], entry['noise_variance']
      g, ident, who = [], [], []
      for reports in per_seed:
        (e,) = [
            e for e in reports[0][1]['sweep'] if (e['transform'], e['noise_variance']) == (t, v)
        ]
        g.append(100 * e['primary_head_accuracy'])
        top1, label, converged = _strongest(reports, secret, t, v)
        ident.append(top1)
        who.append(label + ('' if converged else ' †'))
      seeds = '; '.join(f'{a:.1f} / {b:.1f} ({w})' for a, b, w in zip(g, ident, who))
      lines.append(
          f'| {run} | {t} | {v:g} | '
          f'{statistics.mean(g):.1f} ± {statistics.stdev(g):.1f} | '
          f'{statistics.mean(ident):.1f} ± {statistics.stdev(ident):.1f} | {seeds} |'
      )
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('dirs', nargs='+')
  parser.add_argument('--runs', default='none')
  parser.add_argument('--name', default='default', help='eval name(s), comma-separated')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  text = table(args.dirs, args.runs.split(','), args.name.split(','))
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
