r"""The privacy-utility frontier: `none` once, every defence at a few strengths from it, all evaluated.

  python -m privjax.frontier --config configs/default.py --workdir runs/frontier [--quick] \
      [--config.key=value ...] [--defences siamese,nopeek,siamese+adversarial] [--eval_config FILE]
  python -m privjax.frontier --config configs/lfw_photos.py:csv=PATH --workdir runs/frontier_lfw

Trains `none` in `<workdir>/none`, then for each defence (every `config.defence.<name>` with a
non-empty `strengths` grid, or `--defences`) and each strength a run `<workdir>/<name>_<strength>`
fine-tuned from `none` (the config file is loaded again with the defence's name added to its
arguments, so it picks the fine-tuning schedule; the --config.key=value overrides apply to every
run). Each run is evaluated with the strongest-attacker protocol (privjax.evaluate.protocol: every
attacker family, the PCA and noise settings of the eval config). Writes `<workdir>/frontier.json`
(`points`: one per run, transform and noise variance, with `run`, `defence`, `strength`,
`transform`, `noise_variance`, `primary_accuracy` (%, the cloud head), `identity_top1` (%, the
strongest attacker), `identity_top1_se`, `ssim` (reconstruction, noiseless untransformed only),
`pareto`; and per run its training time and the device-side parameters and FLOPs its defence adds),
`frontier.md` and `frontier.png`. A rerun resumes: finished trainings and evaluations are reused.
`--quick`: the middle strength of each grid and the fast evaluation (configs/eval/default.py:fast).
"""

from __future__ import annotations

import json
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from privjax import cli, config_args, paths
from privjax import config as config_lib


def define_flags():
  """The command's flags; defined only when run as a program, so importing this module (tests,
  notebooks) defines none."""
  config_args.DEFINE_config_file(
      'config', None, 'Training config file[:args] (its defence must be none).'
  )
  flags.DEFINE_string('workdir', None, 'Directory for the runs and the frontier.')
  flags.DEFINE_bool('quick', False, 'Middle strength only, fast evaluation.')
  flags.DEFINE_list('defences', None, 'Defences to run (default: every one with a grid).')
  flags.DEFINE_string(
      'eval_config',
      '',
      'Eval config file[:args] (default configs/eval/default.py, :fast if --quick).',
  )
  flags.mark_flags_as_required(['config', 'workdir'])


def load_eval_config(spec: str, quick: bool):
  """The eval config `spec` (FILE[:args]), by default configs/eval/default.py (:fast if quick)."""
  # configs/... is the installed package's outside a clone (privjax.config_args.resolve).
  return config_args.load(spec or f'configs/eval/default.py:{"fast" if quick else ""}')


def plan(base, defences=None, quick: bool = False) -> list[tuple[str, str, float | None]]:
  """(run name, defence, strength) of every run, `none` first."""
  from privjax import defences as defences_lib

  names = defences or [
      n for n in defences_lib.names() if n in base.defence and base.defence[n].get('strengths')
  ]
  runs = [('none', 'none', None)]
  for name in names:
    try:
      parts = defences_lib.parse(name)
    except defences_lib.DefenceError as e:
      raise config_lib.ConfigError(f'--defences: {e}') from None
    section = base.defence[parts[0]]
    grid = list(section.get('strengths') or ())
    if not grid:
      raise config_lib.ConfigError(f'defence.{parts[0]}.strengths is empty: nothing to sweep')
    if quick:
      grid = [grid[len(grid) // 2]]
    runs += [(f'{name}_{s:g}', name, float(s)) for s in grid]
  return runs


def _config_for(make_config, defence: str, strength, init_from: str):
  from privjax import defences as defences_lib

  config = make_config(defence)
  with config.unlocked():
    config.defence.name = defence
    if strength is not None:
      section = config.defence[defences_lib.parse(defence)[0]]
      section[section.strength] = strength
    if defence != 'none':
      config.init_from = init_from
  return config


def pareto_flags(points: list[dict]) -> list[bool]:
  """A point is on the front when no other keeps as much primary accuracy with less leakage."""
  out = []
  for p in points:
    dominated = any(
        q['primary_accuracy'] >= p['primary_accuracy']
        and q['identity_top1'] <= p['identity_top1']
        and (
            q['primary_accuracy'] > p['primary_accuracy'] or q['identity_top1'] < p['identity_top1']
        )
        for q in points
    )
    out.append(not dominated)
  return out


def frontier_points(name: str, defence: str, strength, report: dict, secret: str) -> list[dict]:
  """One point per setting of `report`: the best utility the cloud gets, the strongest attack on
  `secret` from one upload and, where an evaluator measured it, from more uploads, and the best
  reconstruction's SSIM (privjax.metrics.results: found by role, whichever evaluator made them)."""
  from privjax.metrics import results

  points = []
  for entry in report['settings']:
    leak = results.best(entry['metrics'], 'leak', secret=secret)
    utility = results.best(entry['metrics'], 'utility', uploads=None)
    if leak is None or utility is None:
      continue
    many = results.most_uploads(entry['metrics'], secret)
    fidelity = results.best(entry['metrics'], 'fidelity', uploads=None)
    points.append(
        {
            'run': name,
            'defence': defence,
            'strength': strength,
            'transform': entry['transform'],
            'noise_variance': entry['noise_variance'],
            'primary_accuracy': utility[1].value,
            'primary_source': utility[1].label or utility[0],
            'identity_top1': leak[1].value,
            'identity_top1_se': leak[1].se,
            'identity_attacker': leak[1].label or leak[0],
            'identity_many': None if many is None else many[1].value,
            'identity_many_se': None if many is None else many[1].se,
            'identity_many_uploads': None if many is None else many[1].uploads,
            'ssim': None if fidelity is None else fidelity[1].value,
        }
    )
  return points


def run_frontier(workdir: str, make_config, eval_config, *, defences=None, quick=False) -> dict:
  from privjax import defences as defences_lib
  from privjax.data import pipeline
  from privjax.evaluate import protocol
  from privjax.report import frontier_report, plots, tables
  from privjax.train import loop

  base = config_lib.resolved(make_config('none'))
  if base.defence.name != 'none':
    raise config_lib.ConfigError(
        f'the frontier starts from defence none; the config sets {base.defence.name!r}'
    )
  runs = plan(base, defences, quick)
  configs = {
      name: _config_for(make_config, d, s, paths.join(workdir, 'none')) for name, d, s in runs
  }
  for config in configs.values():  # every run is checked before the first one trains
    config_lib.validate(config_lib.resolved(config))
  builder = pipeline.get_builder(base.dataset)
  context = defences_lib.context_for(base, pipeline.label_classes(builder))
  secret = base.dataset.secret

  points, meta = [], {}
  for name, defence, strength in runs:
    run_dir = paths.join(workdir, name)
    timing_path = paths.join(run_dir, 'frontier_timing.json')
    timing = _read_json(timing_path) if paths.as_path(timing_path).exists() else {}
    if 'train_seconds' not in timing:
      print(f'== training {name}', flush=True)
      t0 = time.perf_counter()
      loop.train_and_evaluate(configs[name], run_dir)
      timing['train_seconds'] = time.perf_counter() - t0
      _write_json(timing_path, timing)
    out_dir = paths.join(run_dir, 'eval', eval_config.name)
    report_path = paths.join(out_dir, 'report.json')
    if not paths.as_path(report_path).exists():
      print(f'== evaluating {name}', flush=True)
      ec = eval_config.copy_and_resolve_references()
      if name != 'none':
        ec.evaluators = (*ec.evaluators, 'reference_run')
        ec.reference_run.workdir = paths.join(workdir, 'none')
      report = protocol.evaluate_run(run_dir, ec, data_dir=base.dataset.data_dir or None)
      tables.write_report(report, out_dir, plots.privacy_accuracy_plots)
    report = _read_json(report_path)
    cost = defences_lib.from_config(configs[name].defence, context).device_cost()
    meta[name] = {
        'defence': defence,
        'strength': strength,
        'train_seconds': timing['train_seconds'],
        'device_params': cost['params'],
        'device_flops_per_image': cost['flops'],
        'primary_accuracy_full_model': report['full_model_accuracy']['value'],
        # What the cloud could learn from the images themselves (the eval's raw-pixel attackers).
        'pixel_identity_top1': _pixel_top1(report, secret),
        'pixel_primary_top1': _pixel_top1(report, base.dataset.primary),
    }
    points += frontier_points(name, defence, strength, report, secret)
  for p, on_front in zip(points, pareto_flags(points)):
    p['pareto'] = on_front
  labels = pipeline.load_split(builder, base.dataset.test_split).labels[base.dataset.primary]
  result = {
      'primary_majority': 100 * float(np.bincount(labels).max() / len(labels)),
      'config': base.to_dict(),
      'eval_config': eval_config.to_dict(),
      'quick': quick,
      'secret': secret,
      'primary': base.dataset.primary,
      'runs': meta,
      'points': points,
  }
  _write_json(paths.join(workdir, 'frontier.json'), result)
  paths.write_atomic(paths.join(workdir, 'frontier.md'), frontier_report.markdown(result))
  frontier_report.plot(result, paths.join(workdir, 'frontier.png'))
  return result


def _pixel_top1(report: dict, label: str):
  """The strongest attack on `label` from the raw images (the once metrics), in %."""
  from privjax.metrics import results

  found = results.best(report['once'], 'raw', secret=label, uploads=None)
  return None if found is None else found[1].value


def _read_json(path):
  return json.loads(paths.as_path(path).read_text())


def _write_json(path, obj):
  """`obj` as JSON at `path` (a local path or a URI), whole or not at all (privjax.paths)."""
  paths.as_path(path).parent.mkdir(parents=True, exist_ok=True)
  paths.write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  f = flags.FLAGS
  flag = f['config']
  spec = config_flags.get_config_filename(flag)
  overrides = config_flags.get_override_values(flag)

  def make_config(defence: str):
    return config_args.load(spec, '' if defence == 'none' else defence, overrides=overrides)

  def frontier():
    eval_config = load_eval_config(f.eval_config, f.quick)
    return run_frontier(f.workdir, make_config, eval_config, defences=f.defences, quick=f.quick)

  cli.run_or_exit(frontier)
  print(paths.as_path(paths.join(f.workdir, 'frontier.md')).read_text())


if __name__ == '__main__':
  define_flags()
  cli.run_app(main)
