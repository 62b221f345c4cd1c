r"""Reproduce the paper: train the baseline, fine-tune Siamese runs from it, evaluate all.

usage: privjax reproduce --workdir DIR [--config FILE[:ARGS]] [--config.KEY=VALUE ...]
           [--eval_config FILE[:ARGS]] [--variants none,siamese,...] [--seeds 0,1,2]
       (also privjax-reproduce, with the same flags)

Trains, each in its own folder of DIR (running the command again resumes whatever is unfinished):
  none                 the primary task alone (the non-private baseline)
  siamese              Siamese fine-tuning from `none` with the paper's margin
  siamese_calibrated   the same with the margin calibrated to the features at the start
then evaluates all three and writes the side-by-side table to DIR/compare.md. `--variants` picks
the runs (siamese_normalized is a fourth); --config.KEY=VALUE overrides apply to every run.

`--seeds 0,1,2` trains and evaluates every variant once per training seed: the config's own seed in
DIR itself, any other seed S in DIR/seedS/, and the mean ± sd over the seeds goes to
DIR/compare_seeds.md. `--seeds S` alone is --config.seed=S.
"""

from __future__ import annotations

from absl import flags

from privjax import config_args
from privjax.commands import _cli

DEFAULT_CONFIG = 'configs/default.py'
DEFAULT_EVAL_CONFIG = 'configs/eval/default.py:fast'
REQUIRED = ('workdir',)


def define_flags(
    config: str = DEFAULT_CONFIG,
    eval_config: str = DEFAULT_EVAL_CONFIG,
    variants=None,
    seeds: bool = True,
):
  """The flags (the sweep defines them with the paper's defaults and without --seeds)."""
  from privjax.experiments import reproduce

  flags.DEFINE_string('workdir', None, 'Directory for the runs and the comparison.')
  config_args.DEFINE_config_file(
      'config',
      config,
      'Training config file[:args]; --config.KEY=VALUE overrides apply to every run.',
  )
  config_args.DEFINE_config_file('eval_config', eval_config, 'Evaluation config file[:args].')
  flags.DEFINE_list(
      'variants',
      list(variants or reproduce.DEFAULT_VARIANTS),
      f'Which runs to train and evaluate, in order (of {", ".join(reproduce.VARIANTS)}).',
  )
  flags.DEFINE_string('data_dir', None, "Data directory, instead of the config's.")
  if seeds:
    flags.DEFINE_list(
        'seeds',
        [],
        'Training seeds, e.g. 0,1,2: every variant is trained and evaluated per seed, the mean ± '
        "sd goes to compare_seeds.md (default: the config's seed only).",
    )


def main(argv):
  from privjax.experiments import reproduce

  f = flags.FLAGS
  path, args, overrides = _cli.config_request('config')
  text = _cli.run_or_exit(
      lambda: reproduce.run_pipeline(
          f.workdir,
          path,
          args,
          f.eval_config,
          f.variants,
          f.data_dir,
          overrides=overrides,
          seeds=f.seeds,
      )
  )
  print(text)
  print(
      f'reports: {f.workdir}/<run>/eval/{f.eval_config.name}/report.md; '
      f'comparison: {f.workdir}/{reproduce.COMPARISON}; plot: {f.workdir}/privacy_accuracy.png'
  )
  if len(f.seeds) > 1:
    print(
        f'other seeds: {f.workdir}/seed<S>/ (the same files); mean ± sd over the seeds: '
        f'{f.workdir}/{reproduce.SEEDS_TABLE}'
    )


def run():
  """The privjax-reproduce console script."""
  _cli.run_command(__name__)
