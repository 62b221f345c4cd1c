r"""The privacy-utility frontier: every defence at a few strengths, fine-tuned from none.

usage: privjax frontier --config FILE[:ARGS] --workdir DIR [--config.KEY=VALUE ...] [--quick]
           [--defences siamese,nopeek,siamese+adversarial] [--eval_config FILE[:ARGS]]
       (also privjax-frontier, with the same flags)

Trains `none` in DIR/none, then for each defence (each `defence.<name>` of the config with a
`strengths` grid, or --defences) and each strength a run DIR/<name>_<strength> fine-tuned from it;
the config file is loaded again with the defence's name added to its arguments, so it can pick the
fine-tuning schedule, and --config.KEY=VALUE overrides apply to every run. Every run is evaluated
by the strongest attackers at the eval config's PCA and noise settings. Writes DIR/frontier.json
(one point per run and setting: accuracy of the cloud head, identity top-1 of the strongest
attacker, whether it is on the Pareto front; per run its training time and what its defence adds
on the device), DIR/frontier.md and DIR/frontier.png. Running the command again reuses finished
trainings and evaluations. --quick: the middle strength of each grid and the fast evaluation
(configs/eval/default.py:fast).

example: privjax frontier --config configs/lfw_photos.py:csv=PATH --workdir runs/frontier_lfw
"""

from __future__ import annotations

from absl import flags

from privjax import config_args, paths
from privjax.commands import _cli

REQUIRED = ('config', 'workdir')


def define_flags():
  config_args.DEFINE_config_file(
      'config', None, 'Training config file[:args] (its defence must be none).'
  )
  flags.DEFINE_string('workdir', None, 'Directory for the runs and the frontier.')
  flags.DEFINE_bool('quick', False, 'Middle strength only, fast evaluation.')
  flags.DEFINE_list('defences', None, 'Defences to run (default: every one with a grid).')
  flags.DEFINE_string(
      'eval_config',
      '',
      'Eval config file[:args] (default configs/eval/default.py, :fast with --quick).',
  )


def main(argv):
  from privjax.experiments import frontier

  f = flags.FLAGS
  path, args, overrides = _cli.config_request('config')
  spec = f'{path}:{args}' if args else path

  def make_config(defence: str):
    return config_args.load(spec, '' if defence == 'none' else defence, overrides=overrides)

  def run_frontier():
    eval_config = frontier.load_eval_config(f.eval_config, f.quick)
    return frontier.run_frontier(
        f.workdir, make_config, eval_config, defences=f.defences, quick=f.quick
    )

  _cli.run_or_exit(run_frontier)
  print(paths.as_path(paths.join(f.workdir, 'frontier.md')).read_text())


def run():
  """The privjax-frontier console script."""
  _cli.run_command(__name__)
