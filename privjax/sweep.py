r"""The paper's sweep over cut layers: `privjax.reproduce.run_pipeline` once per cut.

  python -m privjax.sweep --config configs/paper/vgg16.py:dataset=lfw --workdir runs/paper_lfw \
      [--cuts conv4_3,conv5_1,conv5_2,conv5_3,pool5,fc6] [--variants simple,siamese] \
      [--eval_config configs/paper/eval.py] [--data_dir DIR]

For each cut, `--workdir/<cut>` holds the runs of `--variants` (trained with `cut=<cut>` added to
the --config arguments, each Siamese run starting from that cut's simple run), their evaluations
and compare.md; `--workdir/sweep.md` puts the cuts' comparisons together. A rerun resumes whatever
is unfinished. The config file must take `cut=NAME` as an argument (configs/paper/vgg16.py does).

The flags are privjax.reproduce's (one definition per process), plus --cuts; left unset, --config,
--variants and --eval_config default to the paper's (`PAPER_*` below) instead of reproduce's.
"""

from __future__ import annotations

import os
import time

from absl import app, flags

from privjax import cli, reproduce
from privjax.config import ConfigError

PAPER_CONFIG = 'configs/paper/vgg16.py'
PAPER_EVAL_CONFIG = 'configs/paper/eval.py'
PAPER_VARIANTS = ('simple', 'siamese')
PAPER_CUTS = ('conv4_3', 'conv5_1', 'conv5_2', 'conv5_3', 'pool5', 'fc6')

_CUTS = flags.DEFINE_list('cuts', list(PAPER_CUTS), 'Cut layers to train and evaluate, in order.')


def split_config(spec: str, extra_args: str = '') -> tuple[str, str]:
  """'path.py:a=1,b' (+ extra 'c') → ('path.py', 'a=1,b,c'); the sweep's own choices refused."""
  path, _, args = spec.partition(':')
  args = ','.join(a for a in (args, extra_args) if a)
  names = {a.split('=', 1)[0] for a in args.split(',') if a}
  fixed = sorted(names & {'cut', 'mode', 'simple', 'siamese'})
  if fixed:
    raise ConfigError(
        f'the config arguments set {", ".join(fixed)}; the sweep chooses the cut '
        '(--cuts) and the runs (--variants)'
    )
  return path, args


def run_sweep(
    workdir: str,
    config: str,
    cuts,
    eval_config,
    variants,
    data_dir: str | None = None,
    config_args: str = '',
) -> str:
  path, args = split_config(config, config_args)
  if not cuts:
    raise ConfigError('--cuts is empty; name at least one cut layer')
  if len(set(cuts)) != len(cuts):
    raise ConfigError(f'--cuts names a layer twice: {",".join(cuts)}')
  sections, t0 = [], time.perf_counter()
  for cut in cuts:
    print(f'==== cut {cut}', flush=True)
    cut_args = ','.join(a for a in (args, f'cut={cut}') if a)
    text = reproduce.run_pipeline(
        os.path.join(workdir, cut), path, cut_args, eval_config, list(variants), data_dir
    )
    sections.append(f'## Cut {cut}\n\n{text}')
  text = (
      f'# Sweep: {config}, variants {", ".join(variants)}\n\n'
      + '\n'.join(sections)
      + f'\nSweep wall time: {time.perf_counter() - t0:.0f} s.\n'
  )
  with open(os.path.join(workdir, 'sweep.md'), 'w') as f:
    f.write(text)
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  f = flags.FLAGS

  def given(name, default):
    return f[name].value if f[name].present else default

  def sweep():
    eval_config = (
        f.eval_config if f['eval_config'].present else reproduce.load_config(PAPER_EVAL_CONFIG, '')
    )
    return run_sweep(
        f.workdir,
        given('config', PAPER_CONFIG),
        _CUTS.value,
        eval_config,
        given('variants', PAPER_VARIANTS),
        f.data_dir,
        f.config_args,
    )

  text = cli.run_or_exit(sweep)
  print(text)
  print(f'per cut: {f.workdir}/<cut>/compare.md; all cuts: {f.workdir}/sweep.md')


if __name__ == '__main__':
  cli.run_app(main)
