"""Reports of privacy evaluations: report.json, report.md, and the side-by-side table of runs.

What lives here: writing one run's report files, reading them back (`load_report`), and comparing
runs (`compare_markdown`). Every number comes from a report dict that privjax.evaluate produced;
nothing here computes a metric, and nothing here knows an evaluator by name: metrics are rendered by
their label and unit, and each setting is summed up by its best utility and its strongest leak
(privjax.metrics.results.best), whichever evaluator produced them. Must not import jax or
privjax.attacks.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from privjax import paths as paths_lib
from privjax.errors import EvalError
from privjax.metrics import results
from privjax.metrics.results import as_metric, cell


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, np.bool_):
    return bool(x)
  raise TypeError(f'not JSON serialisable: {type(x)}')


def _clean(x):
  """JSON has no inf/nan: they become strings, so the file stays valid JSON."""
  if isinstance(x, dict):
    return {k: _clean(v) for k, v in x.items() if not str(k).startswith('_')}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
    return str(float(x))
  return x


def setting_title(entry: dict) -> str:
  return f'{entry["transform"]}, σ² {entry["noise_variance"]:g}'


def baseline(report) -> dict:
  """The untransformed, noiseless setting (else the first)."""
  return next((e for e in report['settings'] if e.get('baseline')), report['settings'][0])


def strongest(metrics: dict, secret: str, uploads: int | None = 1):
  return results.best(metrics, 'leak', secret=secret, uploads=uploads)


def best_utility(metrics: dict):
  return results.best(metrics, 'utility', uploads=None)


def _named(found) -> str:
  """`45.3 ± 1.1 % (label; note)` of a (name, metric) pair; '—' for None."""
  if found is None:
    return '—'
  name, m = found
  note = f'; {m.note}' if m.note else ''
  return f'{cell(dataclasses.replace(m, note=""))} ({m.label or name}{note})'


def glance_table(report) -> list[str]:
  """Per setting: what the cloud gets (best utility), what leaks (the strongest attack per secret,
  and with many uploads where an evaluator measured that) and the formal bound (epsilon) where the
  evaluation computed one."""
  secrets = report['secrets']
  settings = report['settings']
  many = [s for s in secrets if any(results.most_uploads(e['metrics'], s) for e in settings)]
  bounds = sorted(
      {
          as_metric(m).uploads
          for e in settings
          for m in e['metrics'].values()
          if as_metric(m).role == 'guarantee'
      }
  )
  head = ['setting', 'upload dims', f'{report["primary"]}: best utility']
  head += [f'{s}: strongest attack' for s in secrets]
  head += [f'{s}: strongest, many uploads' for s in many]
  head += [f'ε, {k} upload{"s" * (k > 1)}' for k in bounds]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for e in settings:
    row = [setting_title(e), str(e['uploaded_dims']), _named(best_utility(e['metrics']))]
    row += [_named(strongest(e['metrics'], s)) for s in secrets]
    for s in many:
      found = results.most_uploads(e['metrics'], s)
      row.append('—' if found is None else f'{_named(found)}, {found[1].uploads} uploads')
    for k in bounds:
      found = [
          as_metric(m)
          for m in e['metrics'].values()
          if as_metric(m).role == 'guarantee' and as_metric(m).uploads == k
      ]
      row.append(f'{found[0].value:.3g}' if found else '—')
    lines.append('| ' + ' | '.join(row) + ' |')
  return lines


def _evaluator_of(name: str) -> str:
  return name.split('/', 1)[0]


def setting_sections(report) -> list[str]:
  """A table per evaluator that runs per setting: its metrics (rows) at each setting it ran."""
  lines = []
  for evaluator, info in report.get('evaluators', {}).items():
    if info['where'] == 'once':
      continue
    short = evaluator.rsplit('.', 1)[-1]
    entries = [
        e for e in report['settings'] if any(_evaluator_of(k) == short for k in e['metrics'])
    ]
    if not entries:
      continue
    rows: dict[str, list[str]] = {}
    row_labels: dict[str, str] = {}
    for i, e in enumerate(entries):
      for name, m in e['metrics'].items():
        if _evaluator_of(name) != short:
          continue
        m = as_metric(m)
        row_labels.setdefault(name, m.label or name)
        rows.setdefault(name, ['—'] * len(entries))[i] = cell(m)
    lines += ['', f'## {short} (at {_where(info["where"])})', '']
    lines += ['| | ' + ' | '.join(setting_title(e) for e in entries) + ' |']
    lines += ['|---|' + '---|' * len(entries)]
    lines += [f'| {row_labels[n]} | ' + ' | '.join(cells) + ' |' for n, cells in rows.items()]
  return lines


def _where(where) -> str:
  if isinstance(where, (list, tuple)):
    return ', '.join(where)
  return {'each': 'every setting', 'baseline': 'the baseline setting'}.get(where, where)


def once_sections(report) -> list[str]:
  lines = []
  for evaluator, info in report.get('evaluators', {}).items():
    if info['where'] != 'once':
      continue
    short = evaluator.rsplit('.', 1)[-1]
    metrics = {k: v for k, v in report['once'].items() if _evaluator_of(k) == short}
    if not metrics:
      continue
    lines += ['', f'## {short} (once)', '', '| | |', '|---|---|']
    lines += [f'| {as_metric(m).label or n} | {cell(m)} |' for n, m in metrics.items()]
  return lines


def markdown(report) -> str:
  defence = report['defence']
  summary = ', '.join(f'{k} {v:.4g}' for k, v in defence.items() if isinstance(v, float))
  lines = [
      f'# Privacy evaluation: `{report["workdir"]}`',
      '',
      f'{report["arch"]} cut at **{report["cut"]}**, defence **{defence["name"]}**'
      f'{f" ({summary})" if summary else ""}, checkpoint step {report["step"]}; primary task '
      f'**{report["primary"]}**, {cell(report["full_model_accuracy"])} for the full model.',
      '',
      'Accuracies in %, ± their binomial standard error over the test examples (the sampling of '
      'the test set only, not run-to-run variation). The strongest attack is the best top-1 of '
      'every attack on what the cloud receives at that setting; chance is uniform guessing, the '
      'majority class the best constant guess.',
      '',
      '## At a glance',
      '',
      *glance_table(report),
  ]
  lines += setting_sections(report)
  lines += once_sections(report)
  if report.get('images'):
    lines += ['', '## Pictures', '']
    lines += [f'{title}: ![{title}]({f})' for title, f in report['images'].items()]
  lines += ['', f'Evaluation took {report["seconds"]:.3g} s.', '']
  return '\n'.join(lines)


def write_report(report: dict, out_dir: str, plot_fn=None) -> dict[str, str]:
  """report.json, report.md (and `plot_fn`'s plots) in `out_dir`, a local folder or a URI."""
  paths_lib.as_path(out_dir).mkdir(parents=True, exist_ok=True)
  paths = {
      'json': paths_lib.join(out_dir, 'report.json'),
      'md': paths_lib.join(out_dir, 'report.md'),
  }
  text = json.dumps(_clean(report), indent=2, default=_json_default, allow_nan=False)
  # Atomically: a kill or a full disk in the middle leaves the previous report, not a part.
  paths_lib.write_atomic(paths['json'], text)
  paths_lib.write_atomic(paths['md'], markdown(report))
  if plot_fn:
    paths.update(plot_fn([report], out_dir))
  return paths


def newest_step_dir(directory: str) -> str | None:
  """The `step_<S>` folder of `directory` with the largest S (an evaluation's report folders,
  one per checkpoint step); None when it has none."""
  try:
    steps = [
        (int(p.name[5:]), p.name)
        for p in paths_lib.as_path(directory).iterdir()
        if p.name.startswith('step_') and p.name[5:].isdigit()
    ]
  except (FileNotFoundError, NotADirectoryError):
    return None
  return paths_lib.join(directory, max(steps)[1]) if steps else None


def load_report(path: str) -> dict:
  """The report at `path`: a report.json or a report folder. (A run's report is found by
  `privjax.load_report`, in the folder privjax.evaluate.protocol.report_dir names.)"""
  if paths_lib.as_path(path).is_dir():
    path = paths_lib.join(path, 'report.json')
  if not paths_lib.as_path(path).exists():
    raise FileNotFoundError(f'no report at {path}; run eval.py on that run first')
  try:
    report = json.loads(paths_lib.as_path(path).read_text())
  except ValueError as e:
    report, error = None, f'not JSON: {e}'
  else:
    error = None if isinstance(report, dict) else 'not a JSON object'
  if error:
    raise EvalError(f'{path} is damaged ({error}); evaluate the run again to rebuild it')
  if report.get('format') != results.REPORT_FORMAT:
    raise EvalError(
        f'{path} is a report of another privjax version (format {report.get("format")!r}, this '
        f'version reads {results.REPORT_FORMAT!r}); evaluate the run again'
    )
  return report


def compare_markdown(reports: list[dict], names: list[str]) -> str:
  """Runs side by side: the at-a-glance figures at the baseline and at each run's noisiest
  untransformed setting, then every metric of the baseline setting and of the once evaluators."""
  secrets = reports[0]['secrets']
  primary = reports[0]['primary']
  rows = []

  def add(label, fn):
    vals = []
    for r in reports:
      try:
        vals.append(fn(r))
      except (KeyError, IndexError, StopIteration):
        vals.append('—')
    rows.append(f'| {label} | ' + ' | '.join(vals) + ' |')

  def noisiest(r):
    return max(
        (e for e in r['settings'] if e['transform'] == 'none'), key=lambda e: e['noise_variance']
    )

  add('defence / cut', lambda r: f'{r["defence"]["name"]} / {r["cut"]}')
  add(f'{primary} accuracy, full model', lambda r: cell(r['full_model_accuracy']))
  for where, pick in (('baseline', baseline), ('noisiest, no PCA', noisiest)):
    add(f'**{where}**: setting', lambda r, pick=pick: setting_title(pick(r)))
    add(
        f'  {primary}: best utility',
        lambda r, pick=pick: _named(best_utility(pick(r)['metrics'])),
    )
    for s in secrets:
      add(
          f'  **{s}: strongest attack**',
          lambda r, s=s, pick=pick: _named(strongest(pick(r)['metrics'], s)),
      )
  labels = {}
  for r in reports:
    for name, m in [*baseline(r)['metrics'].items(), *r['once'].items()]:
      labels.setdefault(name, as_metric(m).label or name)
  for name, label in labels.items():
    add(
        label,
        lambda r, name=name: cell({**baseline(r)['metrics'], **r['once']}[name]),
    )
  header = ['| | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
  return '\n'.join(header + rows) + '\n'
