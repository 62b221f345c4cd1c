r"""What does it take for Siamese fine-tuning to cut identity leakage? Variants of one `simple` run.

    python benchmarks/siamese_ablation.py --simple runs/demo/simple --workdir runs/ablation \
        [--variants paper,calibrated,lambda0.1,lambda1,normalized_lambda1,steps1500,
                    lambda0_steps1500]

Each variant fine-tunes from the given `simple` run (configs/default.py:siamese plus the variant's
overrides below), then the attackers of configs/eval/default.py:fast (linear, MLP, transfer and the
attacker's own PCA-512 + linear; standardised inputs, the same settings as the main job) are trained
on its frozen, untransformed, noiseless cut features of the attacker identities. Nothing about the data or the attackers changes between
variants; only the fine-tuning objective does. Prints and writes WORKDIR/ablation.md: gender
accuracy of the full model, identity top-1 of each attacker family and the strongest, and the
feature statistics, with the `simple` run itself as the first row.

A rerun resumes: finished runs and evaluations are read back, not redone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

try:
  import privjax  # noqa: F401
except ImportError:  # run from a checkout without installing the package
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from privjax import reproduce
from privjax.evaluate import protocol
from privjax.report import tables

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')

# The attacker families of the main job's fast evaluation (configs/eval/default.py:fast).
FAMILIES = ('linear', 'mlp', 'transfer', 'pca_linear')

# name -> (configs/default.py arguments, overrides)
VARIANTS = {
    'paper': ('siamese', {}),
    'calibrated': ('siamese,calibrated', {}),
    'lambda0.1': ('siamese,calibrated', {'defence.siamese.weight': 0.1}),
    'lambda1': ('siamese,calibrated', {'defence.siamese.weight': 1.0}),
    'normalized_lambda1': ('siamese,normalized,calibrated', {'defence.siamese.weight': 1.0}),
    'steps1500': ('siamese,calibrated', {'defence.siamese.weight': 0.1, 'total_steps': 1500}),
    # The control for steps1500: the same 1500 fine-tuning steps without the contrastive term.
    'lambda0_steps1500': ('siamese', {'defence.siamese.weight': 0.0, 'total_steps': 1500}),
}


def eval_config(name: str):
  """The main job's attackers at the untransformed, noiseless setting only."""
  c = reproduce.load_config(os.path.join(ROOT, 'configs', 'eval', 'default.py'), 'fast')
  c.name = name
  c.transforms = ('none',)
  c.noise_variances = (0.0,)
  c.secrets = ('identity', 'gender')
  c.evaluators = ('head', 'attackers')
  return c


def set_path(config, dotted: str, value):
  *parents, leaf = dotted.split('.')
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value


def evaluate(workdir: str, ec, data_dir) -> dict:
  path = os.path.join(workdir, 'eval', ec.name, 'report.json')
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  report = protocol.evaluate_run(workdir, ec, data_dir=data_dir)
  tables.write_report(report, os.path.dirname(path))  # report.json and report.md
  return report


def _g(x) -> str:
  return '–' if x is None else f'{x:.3g}'


def row(name: str, report: dict) -> str:
  base = report['sweep'][0]
  identity = base['attacks']['identity']
  fams = identity['families']
  fs = report['feature_stats']
  defence = report['train_config']['defence']
  weight = defence['siamese']['weight'] if defence['name'] == 'siamese' else None
  return (
      f'| {name} | {_g(report["margin"])} | '
      f'{_g(weight)}'
      f' | {report["step"]} | {100 * report["primary_accuracy_full_model"]:.1f} | '
      + ' | '.join(f'{100 * fams[f]["top1"]:.1f}' for f in FAMILIES)
      + f' | **{100 * identity["top1"]:.1f}** ± {100 * identity["top1_se"]:.1f} | '
      f'{100 * base["attacks"]["gender"]["top1"]:.1f} | {fs["norm"]["median"]:.2f} | '
      f'{fs["dist_same"]["median"]:.2f} / {fs["dist_diff"]["median"]:.2f} |'
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--simple', required=True, help='the trained `simple` run to start from')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--out', default='', help='also write the table (with this command) here')
  args = parser.parse_args(argv)
  from privjax.train import loop

  names = [v for v in args.variants.split(',') if v]
  unknown = [v for v in names if v not in VARIANTS]
  if unknown:
    parser.error(f'unknown variant(s) {unknown}; valid: {", ".join(VARIANTS)}')
  ec = eval_config('ablation')
  lines = [
      '| run | margin | λ | steps | gender acc. | identity top-1: '
      + ' | '.join(FAMILIES)
      + ' | **strongest** ± se | gender attacker | feature norm | dist. same / diff. |',
      '|---' * (9 + len(FAMILIES)) + '|',
  ]
  lines.append(row('simple (start)', evaluate(args.simple, ec, args.data_dir)))
  print(lines[-1], flush=True)
  for name in names:
    config_args, overrides = VARIANTS[name]
    config = reproduce.load_config(os.path.join(ROOT, 'configs', 'default.py'), config_args)
    for key, value in overrides.items():
      set_path(config, key, value)
    config.init_from = args.simple
    config.progress = False
    if args.data_dir:
      config.dataset.data_dir = args.data_dir
    workdir = os.path.join(args.workdir, name)
    loop.train_and_evaluate(config, workdir)
    lines.append(row(name, evaluate(workdir, ec, args.data_dir)))
    print(lines[-1], flush=True)
  text = '\n'.join(lines) + '\n'
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, 'ablation.md'), 'w') as f:
    f.write(text)
  if args.out:
    command = 'python benchmarks/siamese_ablation.py ' + ' '.join(sys.argv[1:])
    with open(args.out, 'w') as f:
      f.write(
          f'`{command}`; identity top-1 of each attacker family on the untransformed, noiseless '
          'cut features (100 attacker identities, chance 1%), accuracies in %.\n\n' + text
      )
  print(text)


if __name__ == '__main__':
  main()
