r"""Mean ± sd over training seeds of evaluation reports: one row per (run, transform, noise).

  python -m benchmarks.seed_table --name target_full,target runs/frontier_lfw_quick \
      runs/lfw_seeds/seed1 runs/lfw_seeds/seed2 --runs none,siamese_1 \
      [--out benchmarks/results/lfw_target_seeds.md]

Reads `<dir>/<run>/eval/<name>/report.json` for every seed directory, run and evaluation name;
reports the cloud head's primary accuracy and the strongest identity attacker's top-1 (%), mean ±
sample sd over the seeds, and each seed's values with the attacker that was strongest. With several
names, the strongest attacker is taken over all of those evaluations (privacy is judged against the
strongest attacker run on that run), and a fit that hit its iteration cap is marked †. The table is
privjax.report.seeds's (the one `python -m privjax reproduce --seeds` writes).
"""

from __future__ import annotations

import argparse

from privjax.commands import _cli
from privjax.report import seeds


def table(dirs, runs, names, secret='identity') -> str:
  return seeds.table(seeds.load_reports(dirs, runs, names), runs, (secret,))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('dirs', nargs='+')
  parser.add_argument('--runs', default='none')
  parser.add_argument('--name', default='default', help='eval name(s), comma-separated')
  parser.add_argument('--secret', default='identity')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  text = _cli.run_or_exit(
      lambda: table(args.dirs, args.runs.split(','), args.name.split(','), args.secret)
  )
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
