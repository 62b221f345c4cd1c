r"""What does it take for Siamese fine-tuning to cut identity leakage? Variants of one `none` run.

    python -m benchmarks.siamese_ablation --baseline runs/demo/none --workdir runs/ablation \
        [--variants paper,calibrated,lambda0.1,lambda1,normalized_lambda1,steps1500,
                    lambda0_steps1500]

Each variant fine-tunes from the given trained `none` run (configs/default.py:siamese plus the
variant's overrides below), then the attackers of configs/eval/default.py:fast (linear, MLP,
transfer and the attacker's own PCA-512 + linear; standardised inputs, the same settings as the
main job) are trained on its frozen, untransformed, noiseless cut features of the attacker
identities (privjax.experiments.runner trains and evaluates them). Nothing about the data or the
attackers changes between variants; only the fine-tuning objective does. Prints and writes
WORKDIR/ablation.md: gender accuracy of the full model, identity top-1 of each attacker family and
the strongest, and the feature statistics, with the `none` run itself as the first row.

A rerun resumes: finished runs and evaluations are read back, not redone.
"""

from __future__ import annotations

import argparse
import os
import sys

from privjax.experiments import reproduce, runner

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
  parser.add_argument('--baseline', required=True, help='the trained `none` run to start from')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--out', default='', help='also write the table (with this command) here')
  args = parser.parse_args(argv)

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
  baseline, _, _ = runner.evaluate_run(args.baseline, ec, data_dir=args.data_dir, reuse_report=True)
  lines.append(row('none (start)', baseline))
  print(lines[-1], flush=True)
  plan = []
  for name in names:
    config_args, overrides = VARIANTS[name]
    config = reproduce.load_config(
        os.path.join(ROOT, 'configs', 'default.py'), config_args, overrides
    )
    config.init_from = args.baseline
    config.progress = False
    plan.append(runner.Planned(name, config))
  outcomes = runner.run_plan(args.workdir, plan, ec, data_dir=args.data_dir, reuse_reports=True)
  lines += [row(o.name, o.report) for o in outcomes]
  text = '\n'.join(lines) + '\n'
  os.makedirs(args.workdir, exist_ok=True)
  with open(os.path.join(args.workdir, 'ablation.md'), 'w') as f:
    f.write(text)
  if args.out:
    command = 'python -m benchmarks.siamese_ablation ' + ' '.join(sys.argv[1:])
    with open(args.out, 'w') as f:
      f.write(
          f'`{command}`; identity top-1 of each attacker family on the untransformed, noiseless '
          'cut features (100 attacker identities, chance 1%), accuracies in %.\n\n' + text
      )
  print(text)


if __name__ == '__main__':
  main()
