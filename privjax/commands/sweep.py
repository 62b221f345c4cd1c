r"""Sweep the paper's cut layers: the reproduce pipeline once per cut.

usage: privjax sweep --workdir DIR [--config FILE[:ARGS]] [--config.KEY=VALUE ...]
           [--cuts conv4_3,conv5_1,...] [--variants none,siamese] [--eval_config FILE[:ARGS]]
       (also privjax-sweep, with the same flags)

For each cut, DIR/<cut> holds the runs of --variants (trained with `cut=<cut>` added to the config's
arguments, each Siamese run starting from that cut's `none` run), their evaluations and compare.md;
DIR/sweep.md puts the cuts' comparisons together. Running the command again resumes whatever is
unfinished. The config file must take `cut=NAME` as an argument (configs/paper/vgg16.py, the
default, does); --config.KEY=VALUE overrides apply to every run, except the cut, the defence and
init_from, which the sweep sets.
"""

from __future__ import annotations

from absl import flags

from privjax.commands import _cli
from privjax.commands import reproduce as reproduce_command

REQUIRED = ('workdir',)


def define_flags():
  from privjax.experiments import sweep

  reproduce_command.define_flags(
      sweep.PAPER_CONFIG, sweep.PAPER_EVAL_CONFIG, sweep.PAPER_VARIANTS, seeds=False
  )
  flags.adopt_module_key_flags(reproduce_command)
  flags.DEFINE_list('cuts', list(sweep.PAPER_CUTS), 'Cut layers to train and evaluate, in order.')


def main(argv):
  from privjax.experiments import sweep

  f = flags.FLAGS
  path, args, overrides = _cli.config_request('config')
  text = _cli.run_or_exit(
      lambda: sweep.run_sweep(
          f.workdir,
          f'{path}:{args}' if args else path,
          f.cuts,
          f.eval_config,
          f.variants,
          f.data_dir,
          overrides=overrides,
      )
  )
  print(text)
  print(f'per cut: {f.workdir}/<cut>/compare.md; all cuts: {f.workdir}/sweep.md')


def run():
  """The privjax-sweep console script."""
  _cli.run_command(__name__)
