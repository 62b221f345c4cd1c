r"""Mean ± sd over training seeds of evaluation reports: one row per (run, transform, noise).

  python benchmarks/seed_table.py --name target runs/frontier_lfw_quick runs/lfw_seeds/seed1 \
      runs/lfw_seeds/seed2 --runs none,learned_noise_0.1 [--out benchmarks/results/lfw_target_seeds.md]

Reads `<dir>/<run>/eval/<name>/report.json` for every seed directory and run; reports the cloud
head's primary accuracy and the strongest identity attacker's top-1 (%), mean ± sample sd over the
seeds, and each seed's values with the attacker that was strongest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics


def table(dirs, runs, name, secret='identity') -> str:
  lines = [
      f'Mean ± sd over {len(dirs)} training seeds; accuracies in %; identity: the strongest '
      'attacker at that setting.',
      '',
      '| run | transform | σ² | gender (cloud head) | identity top-1 | per seed: gender / identity '
      '(attacker) |',
      '|---|---|---|---|---|---|',
  ]
  for run in runs:
    reports = [json.load(open(os.path.join(d, run, 'eval', name, 'report.json'))) for d in dirs]
    for i, entry in enumerate(reports[0]['sweep']):
      entries = [r['sweep'][i] for r in reports]
      assert all(
          (e['transform'], e['noise_variance']) == (entry['transform'], entry['noise_variance'])
          for e in entries
      )
      g = [100 * e['primary_head_accuracy'] for e in entries]
      ident = [100 * e['attacks'][secret]['top1'] for e in entries]
      who = [e['attacks'][secret]['strongest'] for e in entries]
      seeds = '; '.join(f'{a:.1f} / {b:.1f} ({w})' for a, b, w in zip(g, ident, who))
      lines.append(
          f'| {run} | {entry["transform"]} | {entry["noise_variance"]:g} | '
          f'{statistics.mean(g):.1f} ± {statistics.stdev(g):.1f} | '
          f'{statistics.mean(ident):.1f} ± {statistics.stdev(ident):.1f} | {seeds} |'
      )
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('dirs', nargs='+')
  parser.add_argument('--runs', default='none')
  parser.add_argument('--name', default='default')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  text = table(args.dirs, args.runs.split(','), args.name)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
