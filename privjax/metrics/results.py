"""Typed results: what every evaluator returns and every renderer reads.

A `Metric` is a value with its standard error and unit, a readable label and its place in the
privacy-utility trade-off (`role`):

  'utility'   accuracy of the primary task as the cloud gets it (the trained head, a fresh probe, a
              head adapted to the deployed transform);
  'leak'      top-1 identification of a secret label among the attacker's classes from what the
              cloud receives (an attacker family on the uploaded features, a face recogniser on
              reconstructions...), seeing `uploads` uploads of one person or photo;
  'fidelity'  how close a reconstruction is to the image (SSIM, 1 = identical);
  'raw'       the same identification from the raw images themselves: what the cloud would learn
              if the device sent the photo (the reference a defence is read against);
  'guarantee' a formal bound that holds against any attacker (epsilon at a delta, for `uploads`
              uploads; lower is more private, inf: none);
  ''          anything else: baselines (chance, majority class), references, diagnostics.

The report, TensorBoard, the frontier, `cost` and the comparison tables find what they show by role,
never by name: the strongest attack on a secret is the largest 'leak' metric of that secret and
upload count, whichever evaluator produced it. Values are stored in their unit (accuracies in %,
PSNR in dB).

Plain Python (no jax, no numpy): report readers import it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping

# The report dict's format (privjax.evaluate.protocol writes it; every reader checks it).
REPORT_FORMAT = 'privjax.report/2'
ROLES = ('utility', 'leak', 'fidelity', 'raw', 'guarantee', '')
UNITS = ('%', 'dB', 's', '')


@dataclasses.dataclass(frozen=True)
class Metric:
  value: float
  se: float | None = None
  unit: str = ''
  label: str = ''
  role: str = ''
  secret: str = ''  # the label a 'leak' or 'raw' metric attacks
  uploads: int = 1  # uploads of one person (or one photo) the attack sees
  note: str = ''  # a caveat a reader must see beside the value (e.g. a fit that did not converge)

  def __post_init__(self):
    if self.role not in ROLES:
      raise ValueError(f'metric role {self.role!r}; valid: {", ".join(map(repr, ROLES))}')
    if self.unit not in UNITS:
      raise ValueError(f'metric unit {self.unit!r}; valid: {", ".join(map(repr, UNITS))}')
    if self.role in ('leak', 'raw') and not self.secret:
      raise ValueError(f'a {self.role} metric names the secret it attacks')

  def to_dict(self) -> dict:
    return {
        k: _finite(v) if isinstance(v, float) else v
        for k, v in dataclasses.asdict(self).items()
        if k == 'value' or v != _DEFAULTS[k]
    }

  @classmethod
  def from_dict(cls, d: Mapping) -> Metric:
    return cls(**{k: _float(v) if k in ('value', 'se') else v for k, v in d.items()})


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Metric) if f.name != 'value'}


def _finite(x: float):
  """JSON has no inf or nan: they are stored as strings."""
  return x if math.isfinite(x) else str(x)


def _float(x):
  return None if x is None else float(x)


def percent(fraction, se=None, **kw) -> Metric:
  """An accuracy given as a fraction, as a Metric in %."""
  return Metric(
      value=100.0 * float(fraction), se=None if se is None else 100.0 * float(se), unit='%', **kw
  )


def as_metric(m) -> Metric:
  return m if isinstance(m, Metric) else Metric.from_dict(m)


def best(
    metrics: Mapping[str, Metric | Mapping],
    role: str,
    *,
    secret: str | None = None,
    uploads: int | None = 1,
) -> tuple[str, Metric] | None:
  """(name, metric) with the largest value among `metrics` of `role` (and `secret`, and `uploads`
  unless None), or None when there is none. Ties go to the first."""
  found = None
  for name, m in metrics.items():
    m = as_metric(m)
    if m.role != role or (secret is not None and m.secret != secret):
      continue
    if uploads is not None and m.uploads != uploads:
      continue
    if not math.isfinite(m.value):
      continue
    if found is None or m.value > found[1].value:
      found = (name, m)
  return found


def most_uploads(metrics: Mapping[str, Metric | Mapping], secret: str) -> tuple[str, Metric] | None:
  """The strongest 'leak' of `secret` at the largest upload count above one that has any."""
  counts = [as_metric(m).uploads for m in metrics.values() if as_metric(m).role == 'leak']
  many = sorted({u for u in counts if u > 1})
  return best(metrics, 'leak', secret=secret, uploads=many[-1]) if many else None


def cell(m, digits: int = 3) -> str:
  """`45.3 ± 1.1 %`, `12.1 dB`, `0.312`: one metric as a table cell."""
  m = as_metric(m)
  if m.unit == '%':
    text = _fixed(m.value, 1) + ('' if m.se is None else f' ± {_fixed(m.se, 1)}') + ' %'
  else:
    text = _general(m.value, digits) + ('' if m.se is None else f' ± {_general(m.se, 2)}')
    text += f' {m.unit}' if m.unit else ''
  return f'{text} ({m.note})' if m.note else text


def _fixed(x: float, digits: int) -> str:
  return f'{x:.{digits}f}' if math.isfinite(x) else str(x)


def _general(x: float, digits: int) -> str:
  return f'{x:.{digits}g}' if math.isfinite(x) else str(x)


def prefixed(prefix: str, metrics: Mapping[str, Metric]) -> dict[str, Metric]:
  return {f'{prefix}/{k}': v for k, v in metrics.items()}


def labels(metrics: Iterable[tuple[str, Metric | Mapping]]) -> dict[str, str]:
  """name -> the metric's label (its name where it has none)."""
  return {name: as_metric(m).label or name for name, m in metrics}
