r"""Mean ± sd over training seeds of frontier points: several `privjax.frontier` workdirs, one per seed.

  for s in 0 1 2; do
    python -m privjax.frontier --config configs/lfw_photos.py:csv=PATH --config.seed=$s \
        --defences adversarial --config.defence.adversarial.strengths='(3.0,)' \
        --workdir runs/lfw_seeds/seed$s
  done
  python benchmarks/frontier_seeds.py runs/lfw_seeds/seed0 runs/lfw_seeds/seed1 runs/lfw_seeds/seed2 \
      [--out benchmarks/results/lfw_seeds.md]

Prints (and writes) one row per (run, transform, noise variance) present in every workdir: the
primary accuracy of the cloud head and the strongest attacker's identity top-1, mean ± sd over the
seeds (sample sd, n - 1), and each seed's value.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics


def rows(workdirs: list[str]) -> list[dict]:
  results = [json.load(open(os.path.join(w, 'frontier.json'))) for w in workdirs]
  keyed = [
      {(p['run'], p['transform'], p['noise_variance']): p for p in r['points']} for r in results
  ]
  common = [k for k in keyed[0] if all(k in d for d in keyed[1:])]
  out = []
  for key in common:
    values = {m: [d[key][m] for d in keyed] for m in ('primary_accuracy', 'identity_top1')}
    out.append(
        {
            'run': key[0],
            'transform': key[1],
            'noise_variance': key[2],
            **{f'{m}_mean': statistics.mean(v) for m, v in values.items()},
            **{f'{m}_sd': statistics.stdev(v) if len(v) > 1 else 0.0 for m, v in values.items()},
            **{f'{m}_seeds': v for m, v in values.items()},
        }
    )
  return out


def markdown(table: list[dict], workdirs: list[str]) -> str:
  lines = [
      f'Mean ± sd over {len(workdirs)} training seeds ({", ".join(workdirs)}); accuracies in %.',
      '',
      '| run | transform | σ² | primary (cloud head) | identity top-1, strongest | per seed (primary / '
      'identity) |',
      '|---|---|---|---|---|---|',
  ]
  for r in table:
    seeds = '; '.join(
        f'{p:.1f} / {i:.1f}' for p, i in zip(r['primary_accuracy_seeds'], r['identity_top1_seeds'])
    )
    lines.append(
        f'| {r["run"]} | {r["transform"]} | {r["noise_variance"]:g} | '
        f'{r["primary_accuracy_mean"]:.1f} ± {r["primary_accuracy_sd"]:.1f} | '
        f'{r["identity_top1_mean"]:.1f} ± {r["identity_top1_sd"]:.1f} | {seeds} |'
    )
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  text = markdown(rows(args.workdirs), args.workdirs)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
