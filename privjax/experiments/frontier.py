"""The privacy-utility frontier: `none` once, every defence at a few strengths from it, evaluated.

`run_frontier` trains `none` in `<workdir>/none`, then for each defence (every
`config.defence.<name>` with a non-empty `strengths` grid, or those asked for) and each strength a
run `<workdir>/<name>_<strength>` fine-tuned from `none` (`make_config(defence)` builds each run's
config, so the config file can pick the fine-tuning schedule). Each run is evaluated with the
strongest-attacker protocol (privjax.evaluate.protocol: every attacker family, the PCA and noise
settings of the eval config). Writes `<workdir>/frontier.json` (`points`: one per run, transform
and noise variance, with `run`, `defence`, `strength`, `transform`, `noise_variance`,
`primary_accuracy` (%, the cloud head), `identity_top1` (%, the strongest attacker),
`identity_top1_se`, `ssim` (reconstruction, noiseless untransformed only), `pareto`; and per run its
training time and the device-side parameters and FLOPs its defence adds), `frontier.md` and
`frontier.png`. A rerun resumes: finished trainings and evaluations are reused (a damaged
report is evaluated again, a damaged frontier.json rebuilt, each with a line saying so). `quick`: the middle
strength of each grid.
"""

from __future__ import annotations

import json

import numpy as np

from privjax import config_args, paths
from privjax.errors import ConfigError, DefenceError
from privjax.experiments import runner


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
    except DefenceError as e:
      raise ConfigError(f'--defences: {e}') from None
    section = base.defence[parts[0]]
    grid = list(section.get('strengths') or ())
    if not grid:
      raise ConfigError(f'defence.{parts[0]}.strengths is empty: nothing to sweep')
    if quick:
      grid = [grid[len(grid) // 2]]
    runs += [(f'{name}_{s:g}', name, float(s)) for s in grid]
  return runs


def _config_for(make_config, defence: str, strength):
  from privjax import defences as defences_lib

  config = make_config(defence)
  with config.unlocked():
    config.defence.name = defence
    if strength is not None:
      section = config.defence[defences_lib.parse(defence)[0]]
      section[section.strength] = strength
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
  from privjax.report import frontier_report

  base = make_config('none').copy_and_resolve_references()
  if base.defence.name != 'none':
    raise ConfigError(
        f'the frontier starts from defence none; the config sets {base.defence.name!r}'
    )
  runs = plan(base, defences, quick)
  planned = [
      runner.Planned(
          name,
          _config_for(make_config, defence, strength),
          init_from=None if defence == 'none' else 'none',
          reference=None if defence == 'none' else 'none',
      )
      for name, defence, strength in runs
  ]
  runner.check_plan(planned)  # every run is checked before the data set is opened
  builder = pipeline.get_builder(base.dataset)
  context = defences_lib.context_for(base, pipeline.label_classes(builder))
  secret = base.dataset.secret

  outcomes = runner.run_plan(workdir, planned, eval_config, reuse_reports=True)
  points, meta = [], {}
  for (name, defence, strength), p, outcome in zip(runs, planned, outcomes):
    report = outcome.report
    cost = defences_lib.from_config(p.config.defence, context).device_cost()
    meta[name] = {
        'defence': defence,
        'strength': strength,
        'train_seconds': outcome.train_seconds,
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
  target = paths.join(workdir, 'frontier.json')
  damaged = _damaged_json(target)
  _write_json(target, result)
  if damaged:
    print(f"{target} was damaged ({damaged}); rebuilt from the runs' reports", flush=True)
  paths.write_atomic(paths.join(workdir, 'frontier.md'), frontier_report.markdown(result))
  frontier_report.plot(result, paths.join(workdir, 'frontier.png'))
  return result


def _pixel_top1(report: dict, label: str):
  """The strongest attack on `label` from the raw images (the once metrics), in %."""
  from privjax.metrics import results

  found = results.best(report['once'], 'raw', secret=label, uploads=None)
  return None if found is None else found[1].value


def _damaged_json(path) -> str | None:
  """What is wrong with the JSON object at `path`; None when it is one or is absent."""
  try:
    obj = json.loads(paths.as_path(path).read_text())
  except FileNotFoundError:
    return None
  except ValueError as e:
    return f'not JSON: {e}'
  return None if isinstance(obj, dict) else 'not a JSON object'


def _write_json(path, obj):
  """`obj` as JSON at `path` (a local path or a URI), whole or not at all (privjax.paths)."""
  paths.as_path(path).parent.mkdir(parents=True, exist_ok=True)
  paths.write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float))
