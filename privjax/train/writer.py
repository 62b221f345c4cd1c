"""Metric writing: JSON lines in the workdir and, when tensorboardX is installed, TensorBoard.

Only process 0 writes, so multi-host runs log once. No jax array reaches a file: callers pass plain
floats.

A resumed run continues the history of the checkpoint it restored: `MetricWriter(workdir,
resume_step=S)` first drops the rows after step S from metrics.jsonl (rewritten atomically: a
temporary file renamed over it; a line cut short by a kill is dropped too) and tells TensorBoard to
discard its events after S (`purge_step`), so the steps the killed run logged after its checkpoint
are not doubled. The loop saves the running means of a logging interval that a checkpoint cuts in
two with the checkpoint, so the first row after a resume averages the same steps as the
uninterrupted run's row (to float rounding); only its images_per_sec counts the steps since the
resume alone. `read_rows` and `result_at` rebuild a run's final metrics from its history.
"""

from __future__ import annotations

import json
import math
import os

import jax

try:
  import tensorboardX
except ImportError:  # TensorBoard is optional; JSON lines are always written.
  tensorboardX = None

METRICS_FILE = 'metrics.jsonl'


def read_rows(workdir: str) -> list[dict]:
  """The rows of `workdir`'s metrics.jsonl (none if it is missing); unreadable lines are skipped."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        continue  # cut short by a kill
      if isinstance(row, dict) and isinstance(row.get('step'), int):
        rows.append(row)
  return rows


def _float(v):
  return float(v) if isinstance(v, (int, float, str)) else v


def result_at(rows: list[dict], step: int, eval_keys=('test_accuracy',)) -> dict | None:
  """The loop's result at `step` from the history: the last training row up to `step` (keys
  prefixed 'train_') and the evaluation row at `step`; None when `step` has no evaluation row."""
  evaluation = [r for r in rows if r['step'] == step and any(k in r for k in eval_keys)]
  if not evaluation:
    return None
  result = {}
  training = [r for r in rows if r['step'] <= step and not any(k in r for k in eval_keys)]
  if training:
    result.update({f'train_{k}': _float(v) for k, v in training[-1].items() if k != 'step'})
  result.update({k: _float(v) for k, v in evaluation[-1].items() if k != 'step'})
  result['step'] = step
  return result


def truncate_after(workdir: str, step: int) -> int:
  """Drops the rows after `step` (and unreadable lines) from metrics.jsonl, atomically; returns how
  many lines went. The file is not touched when there is nothing to drop."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict) and isinstance(row.get('step'), int) and row['step'] <= step:
      kept.append(line if line.endswith('\n') else line + '\n')
  if len(kept) == len(lines) and all(a == b for a, b in zip(kept, lines)):
    return 0
  tmp = f'{path}.tmp.{os.getpid()}'
  with open(tmp, 'w') as f:
    f.writelines(kept)
  os.replace(tmp, path)
  return len(lines) - len(kept)


class MetricWriter:
  """Appends to metrics.jsonl (and TensorBoard); `resume_step`: the step the run starts from, whose
  later rows a killed run left behind are dropped first (see the module's docstring)."""

  def __init__(self, workdir: str, resume_step: int | None = None):
    self.enabled = jax.process_index() == 0
    self._file = self._tb = None
    if not self.enabled:
      return
    tb_dir = os.path.join(workdir, 'tensorboard')
    purge = None
    if resume_step is not None:
      truncate_after(workdir, resume_step)
      if os.path.isdir(tb_dir) and os.listdir(tb_dir):
        purge = resume_step + 1  # TensorBoard discards the earlier files' events from here on
    self._file = open(os.path.join(workdir, METRICS_FILE), 'a')
    if tensorboardX:
      self._tb = tensorboardX.SummaryWriter(tb_dir, purge_step=purge)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) if math.isfinite(float(v)) else str(float(v)) for k, v in metrics.items()}
    self._file.write(json.dumps({'step': int(step), **clean}) + '\n')
    self._file.flush()
    if self._tb:
      for k, v in metrics.items():
        self._tb.add_scalar(k, float(v), int(step))

  def close(self):
    if self._file:
      self._file.close()
    if self._tb:
      self._tb.close()
