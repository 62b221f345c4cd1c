"""The paper's pipeline end to end: primary-task training, Siamese fine-tuning from it, evaluation.

`run_pipeline` trains, each in its own sub-directory of the workdir (a rerun resumes whatever is
unfinished), the variants
  none                 primary-task training (the non-private baseline, defence none)
  siamese              Siamese fine-tuning from `none`, the paper's margin (defence.siamese.margin)
  siamese_calibrated   the same with the margin calibrated to the features at the start
(and `siamese_normalized`), evaluates them (each other variant with `none` as its reference run) and
writes the side-by-side table to <workdir>/compare.md and the plots beside it.

With several training seeds it does so once per seed (the config's `seed`): the config's own seed in
the workdir itself, as with one seed, any other seed S in <workdir>/seedS/; the mean ± sd over the
seeds of the cloud head's accuracy and of the strongest attacker's top-1 on each secret but the
primary label goes to <workdir>/compare_seeds.md (privjax.report.seeds).

The config file is loaded once per run with the run's arguments added to those after the colon
(`none`, `siamese,calibrated`, ...); overrides ({'a.b': value}) apply to every run, except the keys
the pipeline sets itself (the defence, `init_from`).
"""

from __future__ import annotations

import time

from privjax import config_args, paths
from privjax.errors import ConfigError
from privjax.experiments import runner

BASELINE = 'none'
DEFAULT_VARIANTS = ('none', 'siamese', 'siamese_calibrated')
# variant → (config arguments, run it starts from)
VARIANTS = {
    'none': ('none', None),
    'siamese': ('siamese', BASELINE),
    'siamese_calibrated': ('siamese,calibrated', BASELINE),
    'siamese_normalized': ('siamese,normalized', BASELINE),
}
# Config keys each variant sets: an override of one would contradict the choice of variants.
PIPELINE_KEYS = ('defence.name', 'init_from')
COMPARISON = 'compare.md'
SEEDS_TABLE = 'compare_seeds.md'


def load_config(path: str, arg: str = '', overrides=None):
  """The config file at `path` (see privjax.config_args.resolve) for `arg`, with `overrides`."""
  return config_args.apply_overrides(config_args.config_module(path).get_config(arg), overrides)


def parse_seeds(seeds) -> list[int]:
  """Seeds given as text or integers, as distinct integers (ConfigError otherwise)."""
  out = []
  for s in seeds:
    try:
      out.append(int(str(s).strip()))
    except ValueError:
      raise ConfigError(f'--seeds: {s!r} is not an integer seed') from None
  if len(set(out)) != len(out):
    raise ConfigError(f'--seeds: {",".join(map(str, out))} repeats a seed')
  return out


def seed_dir(workdir: str, seed: int, config_seed: int) -> str:
  """Where the runs of training seed `seed` live: the workdir itself for the config's own seed (the
  layout with one seed), else <workdir>/seed<seed>."""
  return workdir if seed == config_seed else paths.join(workdir, f'seed{seed}')


def plan(config_path: str, extra_args: str, variants, overrides=None) -> list[runner.Planned]:
  """The runs of `variants`, each variant's config arguments added to `extra_args`."""
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ConfigError(f'unknown variant(s) {unknown}; valid: {", ".join(VARIANTS)}')
  fixed = sorted(k for k in overrides or {} if k in PIPELINE_KEYS)
  if fixed:
    raise ConfigError(
        f'--config.{fixed[0]} is set by each run of the pipeline; choose the runs with --variants'
    )
  out = []
  for name in variants:
    args, parent = VARIANTS[name]
    if parent and parent not in variants:
      raise ConfigError(f'variant {name} starts from {parent}; include {parent} in --variants')
    reference = BASELINE if name != BASELINE and BASELINE in variants else None
    config = load_config(config_path, config_args.join(args, extra_args), overrides)
    out.append(runner.Planned(name, config, init_from=parent, reference=reference))
  return out


def run_pipeline(
    workdir: str,
    config_path: str,
    extra_args: str,
    eval_config,
    variants,
    data_dir: str | None = None,
    overrides=None,
    seeds=None,
) -> str:
  """Trains `variants` from the config file at `config_path` (arguments `extra_args` and the
  variant's, then `overrides`, {'a.b': value}), evaluates each with `eval_config`, compares them.
  With several `seeds`, does so once per training seed (see `seed_dir`) and returns the mean ± sd
  table over the seeds (also written to <workdir>/compare_seeds.md)."""
  seeds = parse_seeds(seeds or [])
  runs = plan(config_path, extra_args, variants, overrides)  # refusals before any training
  if len(seeds) < 2:
    overrides = dict(overrides or {})
    if seeds:
      if 'seed' in overrides and overrides['seed'] != seeds[0]:
        raise ConfigError('--config.seed and --seeds disagree; give the training seed once')
      overrides['seed'] = seeds[0]
      runs = plan(config_path, extra_args, variants, overrides)
    text, _ = _one_seed(workdir, runs, eval_config, data_dir)
    return text
  if 'seed' in (overrides or {}):
    raise ConfigError('--config.seed is set per run by --seeds; give the training seeds once')
  from privjax.report import seeds as seeds_lib

  t0 = time.perf_counter()
  per_seed, dirs = [], []
  for seed in seeds:
    d = seed_dir(workdir, seed, runs[0].config.seed)
    print(f'=== training seed {seed} in {d}', flush=True)
    seeded = plan(config_path, extra_args, variants, {**(overrides or {}), 'seed': seed})
    _, outcomes = _one_seed(d, seeded, eval_config, data_dir)
    per_seed.append({o.name: [(eval_config.name, o.report)] for o in outcomes})
    dirs.append(d)
  first = per_seed[0][variants[0]][0][1]
  secrets = [s for s in first['secrets'] if s != first['primary']]
  text = seeds_lib.table(per_seed, list(variants), tuple(secrets))
  where = ', '.join(f'seed {s}: {d}' for s, d in zip(seeds, dirs))
  text += f'\nRuns ({where}); wall time {time.perf_counter() - t0:.0f} s.\n'
  paths.as_path(paths.join(workdir, SEEDS_TABLE)).write_text(text)
  return text


def _one_seed(workdir, runs, eval_config, data_dir):
  """One training seed's pipeline in `workdir` (the runs, their reports, compare.md): (the
  comparison text, the runs' outcomes)."""
  from privjax.report import plots, tables

  start = time.perf_counter()
  outcomes = runner.run_plan(workdir, runs, eval_config, data_dir=data_dir)
  elapsed = time.perf_counter() - start
  names = [o.name for o in outcomes]
  reports = [o.report for o in outcomes]
  text = tables.compare_markdown(reports, names)
  plots.privacy_accuracy_plots(reports, workdir, names=names)
  timings = {f'train_{o.name}': o.train_seconds for o in outcomes}
  timings.update({f'eval_{o.name}': o.eval_seconds for o in outcomes})
  timing = ', '.join(f'{k} {v:.0f} s' for k, v in timings.items())
  text += (
      f'\nWall time: {elapsed:.0f} s for this command; each part took (evaluations overlap with '
      f'training and with one another when they run side by side): {timing}.\n'
  )
  paths.as_path(paths.join(workdir, COMPARISON)).write_text(text)
  return text, outcomes
