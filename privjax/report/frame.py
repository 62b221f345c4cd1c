"""Reports as one pandas DataFrame: `metrics_frame(reports, names)`, what `privjax.compare` returns.

The frame is long ("tidy"): one row per run × setting × metric, so a notebook filters it by column
(`df[df.role == 'leak']`), sorts it and plots it without reshaping, and `pivot_table` makes any
wide view from it (`df.pivot_table(index='label', columns='run', values='value')`). Its columns:

  run             the name given to the run (by default its workdir's last component)
  setting         the setting's name (`none/0`, `pca_32/0.1`, ...) or 'once' for the metrics of
                  evaluators that run once (raw pixels, reference runs)
  transform       the device's feature transform ('none', 'pca:32'); None for 'once'
  noise_variance  the noise variance σ² of the setting; NaN for 'once'
  baseline        whether it is the untransformed, noiseless setting (True for 'once' too: the once
                  metrics belong to the run, not to a setting)
  metric          the metric's name in the report (`<evaluator>/<name>`)
  label           its readable label (the name where it has none)
  value, se       the value and its standard error (NaN where none), in `unit`
  unit            '%', 'dB', 's' or ''
  role            'utility', 'leak', 'fidelity', 'raw', 'guarantee' or '' (privjax.metrics.results)
  secret          the label a 'leak' or 'raw' metric attacks ('' otherwise)
  uploads         uploads of one person the attack sees
  note            a caveat printed beside the value ('' if none)

pandas is imported only when a frame is made: it is the `notebook` extra. Must not import jax.
"""

from __future__ import annotations

import math

from privjax.metrics import results

COLUMNS = (
    'run',
    'setting',
    'transform',
    'noise_variance',
    'baseline',
    'metric',
    'label',
    'value',
    'se',
    'unit',
    'role',
    'secret',
    'uploads',
    'note',
)


def require_pandas():
  """The pandas module, or a one-line ImportError naming the extra that installs it."""
  try:
    import pandas
  except ImportError:
    raise ImportError(
        "privjax's DataFrames need pandas: pip install 'privjax[notebook]' (or pandas)"
    ) from None
  return pandas


def _rows(report: dict, run: str):
  def row(setting, transform, variance, baseline, name, m):
    m = results.as_metric(m)
    return (
        run,
        setting,
        transform,
        variance,
        baseline,
        name,
        m.label or name,
        m.value,
        math.nan if m.se is None else m.se,
        m.unit,
        m.role,
        m.secret,
        m.uploads,
        m.note,
    )

  for e in report['settings']:
    for name, m in e['metrics'].items():
      yield row(e['name'], e['transform'], float(e['noise_variance']), bool(e['baseline']), name, m)
  for name, m in report.get('once', {}).items():
    yield row('once', None, math.nan, True, name, m)


def metrics_frame(reports: list[dict], names: list[str]):
  """One row per run × setting × metric of `reports` (report dicts), the runs named `names`."""
  pandas = require_pandas()
  if len(names) != len(reports):
    raise ValueError(f'{len(reports)} reports but {len(names)} names')
  rows = [r for report, name in zip(reports, names) for r in _rows(report, name)]
  frame = pandas.DataFrame.from_records(rows, columns=list(COLUMNS))
  return frame.astype({'value': float, 'se': float, 'noise_variance': float, 'uploads': int})
