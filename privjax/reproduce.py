r"""The paper's pipeline end to end: simple fine-tuning, Siamese fine-tuning from it, evaluation.

  python -m privjax.reproduce --workdir runs/demo [--config configs/default.py[:args]] \
      [--config.key=value ...] [--eval_config configs/eval/default.py:fast] [--eval_config.key=value]

(`privjax-reproduce` once installed, same flags.) Runs, each in its own sub-directory of --workdir (a
rerun resumes whatever is unfinished):
  simple               primary-task training (the non-private baseline)
  siamese              Siamese fine-tuning from `simple`, the paper's margin (contrastive.margin)
  siamese_calibrated   the same with the margin calibrated to the features at the start
then evaluates all three and writes the side-by-side table to --workdir/compare.md.

`--seeds 0,1,2` trains and evaluates every variant once per training seed (the config's `seed`):
the config's own seed (0 in every shipped config) in --workdir itself, as without --seeds, so
those results stay valid; any other seed S in --workdir/seedS/ (runs and compare.md alike). The
mean ± sd over the seeds of the cloud head's accuracy and of the strongest attacker's top-1 on each
secret but the primary label goes to --workdir/compare_seeds.md (privjax.report.seeds; the
per-seed values are in its last column). Without --seeds nothing changes; `--seeds S` alone is
`--config.seed=S`.

The config file is loaded once per run with the run's arguments added to those after the colon
(`simple`, `siamese,calibrated`, ...); the --config.key=value overrides apply to every run, except
the keys the pipeline sets itself (the defence, `init_from`). `--config_args A,B` is the older
spelling of `--config FILE:A,B` and is added to the file's arguments.
"""

from __future__ import annotations

import time

from absl import app, flags
from ml_collections import config_flags

from privjax import cli, config_args, paths
from privjax.config import ConfigError

DEFAULT_CONFIG = 'configs/default.py'
DEFAULT_EVAL_CONFIG = 'configs/eval/default.py:fast'
DEFAULT_VARIANTS = ('simple', 'siamese', 'siamese_calibrated')

# variant → (config arguments, run it starts from)
VARIANTS = {
    'simple': ('simple', None),
    'siamese': ('siamese', 'simple'),
    'siamese_calibrated': ('siamese,calibrated', 'simple'),
    'siamese_normalized': ('siamese,normalized', 'simple'),
}
# Config keys each variant sets: an override of one would contradict --variants.
PIPELINE_KEYS = ('mode', 'defence.name', 'init_from')
SEEDS_TABLE = 'compare_seeds.md'


def define_flags(
    config: str = DEFAULT_CONFIG,
    eval_config: str = DEFAULT_EVAL_CONFIG,
    variants=DEFAULT_VARIANTS,
    seeds: bool = True,
):
  """The command's flags (privjax.sweep defines them with the paper's defaults, without --seeds,
  which it does not take); defined only when run as a program, so importing this module (tests,
  the notebook) defines none."""
  flags.DEFINE_string('workdir', None, 'Directory for the runs and the comparison.')
  config_args.DEFINE_config_file(
      'config',
      config,
      'Training config file[:args]; --config.key=value overrides apply to every run.',
  )
  flags.DEFINE_string(
      'config_args',
      '',
      'Older spelling of --config FILE:ARGS: comma-separated config arguments added to those of '
      '--config (for example "tiny").',
  )
  config_args.DEFINE_config_file('eval_config', eval_config, 'Evaluation config file[:args].')
  flags.DEFINE_list('variants', list(variants), 'Which runs to train and evaluate, in order.')
  flags.DEFINE_string('data_dir', None, "TFDS data dir (default: the config's).")
  if seeds:
    flags.DEFINE_list(
        'seeds',
        [],
        'Training seeds, e.g. 0,1,2: every variant is trained and evaluated per seed, the mean ± sd '
        "goes to compare_seeds.md (default: the config's seed only, as before).",
    )
  flags.mark_flag_as_required('workdir')


def load_config(path: str, arg: str = '', overrides=None):
  """The config file at `path` (see privjax.config_args.resolve) for `arg`, with `overrides`."""
  return config_args.apply_overrides(config_args.config_module(path).get_config(arg), overrides)


def config_request(flag_values=None) -> tuple[str, str, dict]:
  """(file, arguments, overrides) of the --config flag (with --config_args added)."""
  f = flag_values if flag_values is not None else flags.FLAGS
  path, _, args = config_flags.get_config_filename(f['config']).partition(':')
  return (
      path,
      config_args.join(args, f.config_args),
      dict(config_flags.get_override_values(f['config'])),
  )


def parse_seeds(seeds) -> list[int]:
  """The --seeds values as distinct integers (ConfigError otherwise)."""
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
  """Where the runs of training seed `seed` live: --workdir itself for the config's own seed (the
  layout without --seeds), else --workdir/seed<seed>."""
  return workdir if seed == config_seed else paths.join(workdir, f'seed{seed}')


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
  table over the seeds (also written to --workdir/compare_seeds.md)."""
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ConfigError(f'unknown variant(s) {unknown}; valid: {", ".join(VARIANTS)}')
  fixed = sorted(k for k in overrides or {} if k in PIPELINE_KEYS)
  if fixed:
    raise ConfigError(
        f'--config.{fixed[0]} is set by each run of the pipeline; choose the runs with --variants'
    )
  for name in variants:
    parent = VARIANTS[name][1]
    if parent and parent not in variants:
      raise ConfigError(f'variant {name} starts from {parent}; include {parent} in --variants')
  seeds = parse_seeds(seeds or [])
  if len(seeds) < 2:
    overrides = dict(overrides or {})
    if seeds:
      if 'seed' in overrides and overrides['seed'] != seeds[0]:
        raise ConfigError('--config.seed and --seeds disagree; give the training seed once')
      overrides['seed'] = seeds[0]
    text, _ = _one_seed(
        workdir, config_path, extra_args, eval_config, variants, data_dir, overrides
    )
    return text
  if 'seed' in (overrides or {}):
    raise ConfigError('--config.seed is set per run by --seeds; give the training seeds once')
  from privjax.report import seeds as seeds_lib

  first = VARIANTS[variants[0]][0]
  config_seed = load_config(config_path, config_args.join(first, extra_args), overrides).seed
  t0 = time.perf_counter()
  per_seed, dirs = [], []
  for seed in seeds:
    d = seed_dir(workdir, seed, config_seed)
    print(f'=== training seed {seed} in {d}', flush=True)
    _, reports = _one_seed(
        d,
        config_path,
        extra_args,
        eval_config,
        variants,
        data_dir,
        {**(overrides or {}), 'seed': seed},
    )
    per_seed.append({v: [(eval_config.name, r)] for v, r in zip(variants, reports)})
    dirs.append(d)
  first = per_seed[0][variants[0]][0][1]
  secrets = [s for s in first['secrets'] if s != first['primary']]
  text = seeds_lib.table(per_seed, list(variants), tuple(secrets))
  where = ', '.join(f'seed {s}: {d}' for s, d in zip(seeds, dirs))
  text += f'\nRuns ({where}); wall time {time.perf_counter() - t0:.0f} s.\n'
  paths.as_path(paths.join(workdir, SEEDS_TABLE)).write_text(text)
  return text


def _one_seed(workdir, config_path, extra_args, eval_config, variants, data_dir, overrides):
  """One training seed's pipeline in `workdir` (the runs, their reports, compare.md): (the
  comparison text, the reports in the order of `variants`)."""
  from privjax.evaluate import protocol
  from privjax.report import plots, tables
  from privjax.train import loop

  timings, reports = {}, []
  for name in variants:
    args, parent = VARIANTS[name]
    config = load_config(config_path, config_args.join(args, extra_args), overrides)
    if data_dir:
      config.dataset.data_dir = data_dir
    if parent:
      config.init_from = paths.join(workdir, parent)
    t0 = time.perf_counter()
    print(f'== training {name}', flush=True)
    loop.train_and_evaluate(config, paths.join(workdir, name))
    timings[f'train_{name}'] = time.perf_counter() - t0
  for name in variants:
    t0 = time.perf_counter()
    print(f'== evaluating {name}', flush=True)
    ec = eval_config.copy_and_resolve_references()
    if name != 'simple' and 'simple' in variants:
      ec.evaluators = (*ec.evaluators, 'reference_run')
      ec.reference_run.workdir = paths.join(workdir, 'simple')
    report = protocol.evaluate_run(paths.join(workdir, name), ec, data_dir=data_dir)
    tables.write_report(
        report, paths.join(workdir, name, 'eval', ec.name), plots.privacy_accuracy_plots
    )
    reports.append(report)
    timings[f'eval_{name}'] = time.perf_counter() - t0
  text = tables.compare_markdown(reports, list(variants))
  plots.privacy_accuracy_plots(reports, workdir, names=list(variants))
  timing = ', '.join(f'{k} {v:.0f} s' for k, v in timings.items())
  text += f'\nWall time: {sum(timings.values()):.0f} s ({timing}).\n'
  paths.as_path(paths.join(workdir, 'compare.md')).write_text(text)
  return text, reports


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  f = flags.FLAGS
  path, args, overrides = config_request(f)
  text = cli.run_or_exit(
      lambda: run_pipeline(
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
      f'comparison: {f.workdir}/compare.md; plot: {f.workdir}/privacy_accuracy.png'
  )
  if len(f.seeds) > 1:
    print(
        f'other seeds: {f.workdir}/seed<S>/ (the same files); mean ± sd over the seeds: '
        f'{f.workdir}/{SEEDS_TABLE}'
    )


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
