"""The paper's sweep over cut layers: the pipeline of privjax.experiments.reproduce once per cut.

For each cut, `<workdir>/<cut>` holds the runs of the variants (trained with `cut=<cut>` added to
the config arguments, each Siamese run starting from that cut's `none` run), their evaluations and
compare.md; `<workdir>/sweep.md` puts the cuts' comparisons together. A rerun resumes whatever is
unfinished. The config file must take `cut=NAME` as an argument (configs/paper/vgg16.py does);
overrides apply to every run, except those of the keys the sweep sets itself (the cut, the defence,
`init_from`).
"""

from __future__ import annotations

import time

from privjax import config_args, paths
from privjax.errors import ConfigError
from privjax.experiments import reproduce

PAPER_CONFIG = 'configs/paper/vgg16.py'
PAPER_EVAL_CONFIG = 'configs/paper/eval.py'
PAPER_VARIANTS = ('none', 'siamese')
PAPER_CUTS = ('conv4_3', 'conv5_1', 'conv5_2', 'conv5_3', 'pool5', 'fc6')
# What the sweep chooses: config arguments and overrides may not set them.
SWEEP_ARGS = ('cut', 'none', 'siamese')
SWEEP_KEYS = ('model.cut',) + reproduce.PIPELINE_KEYS


def split_config(spec: str, extra_args: str = '') -> tuple[str, str]:
  """'path.py:a=1,b' (+ extra 'c') → ('path.py', 'a=1,b,c'); the sweep's own choices refused."""
  path, _, args = spec.partition(':')
  args = config_args.join(args, extra_args)
  parsed = config_args.parse(args, words=None, options=None)
  fixed = sorted((set(parsed.words) | set(parsed.options)) & set(SWEEP_ARGS))
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
    extra_args: str = '',
    overrides=None,
) -> str:
  """`config` is 'FILE[:ARGS]'; `extra_args` are added to ARGS, `overrides` ({'a.b': value}) are
  applied to every run."""
  path, args = split_config(config, extra_args)
  fixed = sorted(k for k in overrides or {} if k in SWEEP_KEYS)
  if fixed:
    raise ConfigError(
        f'--config.{fixed[0]} is set by the sweep; choose the cuts with --cuts and the runs with '
        '--variants'
    )
  if not cuts:
    raise ConfigError('--cuts is empty; name at least one cut layer')
  if len(set(cuts)) != len(cuts):
    raise ConfigError(f'--cuts names a layer twice: {",".join(cuts)}')
  sections, t0 = [], time.perf_counter()
  for cut in cuts:
    print(f'==== cut {cut}', flush=True)
    text = reproduce.run_pipeline(
        paths.join(workdir, cut),
        path,
        config_args.join(args, f'cut={cut}'),
        eval_config,
        list(variants),
        data_dir,
        overrides=overrides,
    )
    sections.append(f'## Cut {cut}\n\n{text}')
  text = (
      f'# Sweep: {config}, variants {", ".join(variants)}\n\n'
      + '\n'.join(sections)
      + f'\nSweep wall time: {time.perf_counter() - t0:.0f} s.\n'
  )
  paths.as_path(paths.join(workdir, 'sweep.md')).write_text(text)
  return text
