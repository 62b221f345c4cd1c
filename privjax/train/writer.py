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
resume alone. `read_rows` and `result_at` rebuild a run's final metrics from its history. A
damaged line before the last (which only a kill can cut short) is a one-line RunError: nothing
drops it silently.

In TensorBoard the metrics are grouped under `train/` (`train/loss`, `train/test_accuracy`...), beside
the evaluation's `eval/`; metrics.jsonl keeps their bare names.

TensorBoard's HPARAMS tab: `write_hparams` puts the run's config (flattened to dotted keys) and the
names of the metrics to compare in the run's own event file, as the hparams plugin's experiment
and session-start summaries (built by `tensorboardX.summary.hparams`, the function behind
tensorboardX's `add_hparams`; that method would put them in a new sub-run with copies of the
metrics instead), and `write_session_end` marks the session finished when the training is over. A
resumed run does not write them again.

The workdir may be a URI (`gs://...`, privjax.paths). Object stores cannot append: there
metrics.jsonl is rewritten whole on every write, and the event files are written through
`etils.epath` (kept in memory, rewritten on every flush, as tensorboardX's own GCS and S3 writers
do; registered with tensorboardX for the URI's scheme by `summary_writer`, which evaluation can use
too).
"""

from __future__ import annotations

import io
import json
import math
import os

import jax

from privjax import paths
from privjax.errors import RunError

try:
  import tensorboardX
  from tensorboardX import record_writer as tb_record_writer
  from tensorboardX import summary as tb_summary
except ImportError:  # TensorBoard is optional; JSON lines are always written.
  tensorboardX = None

METRICS_FILE = 'metrics.jsonl'
# TensorBoard groups tags by their first component: training's under train/, beside the
# evaluation's eval/ (privjax.evaluate.tensorboard). metrics.jsonl keeps the bare names.
TAG_GROUP = 'train'


def tag(name: str) -> str:
  """The TensorBoard tag of the training metric `name`."""
  return f'{TAG_GROUP}/{name}'


def _rows(path) -> list[tuple[str, dict | None]]:
  """(line, its row or None when it is cut short) of every line of metrics.jsonl at `path`.

  Only the last line can be cut short (a kill while it was appended); a damaged line before it is
  a RunError naming the file and the line, not dropped: it would lose that history silently.
  """
  lines = path.read_text().splitlines(keepends=True)
  out = []
  for i, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError as e:
      row, error = None, f'not JSON: {e}'
    else:
      ok = isinstance(row, dict) and isinstance(row.get('step'), int)
      row, error = (row, None) if ok else (None, 'not a row of metrics with a step')
    if error and i < len(lines):
      raise RunError(
          f"{path} line {i} is damaged ({error}); it is the run's metric history: restore the "
          'file, or delete that line (its metrics are lost), then run again'
      )
    out.append((line, row))
  return out


def read_rows(workdir: str) -> list[dict]:
  """The rows of `workdir`'s metrics.jsonl (none if it is missing); a last line cut short by a
  kill is skipped, a damaged line before it is a RunError."""
  path = paths.as_path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [row for _, row in _rows(path) if row is not None]


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
  """Drops the rows after `step` (and a last line cut short) from metrics.jsonl, atomically; returns how
  many lines went. The file is not touched when there is nothing to drop."""
  path = paths.as_path(workdir) / METRICS_FILE
  if not path.exists():
    return 0
  lines = path.read_text().splitlines(keepends=True)
  kept = []
  for line, row in _rows(path):
    if row is not None and row['step'] <= step:
      kept.append(line if line.endswith('\n') else line + '\n')
  if len(kept) == len(lines) and all(a == b for a, b in zip(kept, lines)):
    return 0
  paths.write_atomic(path, ''.join(kept))
  return len(lines) - len(kept)


def flat_hparams(config_dict: dict, prefix: str = '') -> dict[str, str | bool | int | float]:
  """The config as {'dotted.key': value} for TensorBoard: numbers, booleans and strings as they
  are, anything else (None, lists) as its JSON text."""
  flat = {}
  for key, value in config_dict.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(flat_hparams(value, f'{name}.'))
    elif isinstance(value, (str, bool, int, float)):
      flat[name] = value
    else:
      flat[name] = json.dumps(value, default=str)
  return flat


class _EventFile:
  """An event file on an object store: kept in memory and written whole through epath on every
  flush (an object store cannot append)."""

  def __init__(self, path: str):
    self.path, self._buffer, self._written = path, io.BytesIO(), 0

  def write(self, data: bytes) -> None:
    self._buffer.write(data)

  def flush(self) -> None:
    if self._buffer.tell() != self._written:
      paths.as_path(self.path).write_bytes(self._buffer.getvalue())
      self._written = self._buffer.tell()

  def close(self) -> None:
    self.flush()


class _EventFiles:
  """tensorboardX's writer factory interface for URIs, through epath."""

  def open(self, path: str) -> _EventFile:
    return _EventFile(path)

  def directory_check(self, path: str) -> None:
    paths.as_path(path).mkdir(parents=True, exist_ok=True)  # a no-op on an object store


def summary_writer(logdir: str, purge_step: int | None = None):
  """A tensorboardX `SummaryWriter` for `logdir`, a local path or a URI (its event files then go
  through epath, for every writer of the process and that scheme); needs tensorboardX."""
  logdir = os.fspath(logdir)
  if not paths.is_local(logdir):
    scheme = logdir.split('://', 1)[0]
    tb_record_writer.register_writer_factory(scheme, _EventFiles())
  return tensorboardX.SummaryWriter(logdir, purge_step=purge_step)


class MetricWriter:
  """Appends to metrics.jsonl (and TensorBoard); `resume_step`: the step the run starts from, whose
  later rows a killed run left behind are dropped first (see the module's docstring)."""

  def __init__(self, workdir: str, resume_step: int | None = None):
    self.enabled = jax.process_index() == 0
    self._file = self._tb = None
    self._text = None  # metrics.jsonl's content, when it is rewritten whole (an object store)
    self._fresh = False
    if not self.enabled:
      return
    tb_dir = paths.join(workdir, 'tensorboard')
    if resume_step is not None:
      truncate_after(workdir, resume_step)
    tb = paths.as_path(tb_dir)
    self._fresh = not (tb.is_dir() and any(tb.iterdir()))
    # TensorBoard discards the earlier files' events from the purge step on.
    purge = None if self._fresh or resume_step is None else resume_step + 1
    self._path = paths.join(workdir, METRICS_FILE)
    if paths.is_local(workdir):
      self._file = open(self._path, 'a')
    else:
      path = paths.as_path(self._path)
      self._text = path.read_text() if path.exists() else ''
      if self._text and not self._text.endswith('\n'):
        self._text += '\n'
    if tensorboardX:
      self._tb = summary_writer(tb_dir, purge)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) if math.isfinite(float(v)) else str(float(v)) for k, v in metrics.items()}
    line = json.dumps({'step': int(step), **clean}) + '\n'
    if self._file:
      self._file.write(line)
      self._file.flush()
    else:
      self._text += line
      paths.as_path(self._path).write_text(self._text)
    if self._tb:
      for k, v in metrics.items():
        self._tb.add_scalar(tag(k), float(v), int(step))

  def write_hparams(self, config_dict: dict, metrics) -> bool:
    """The config and the metric tags `metrics` for TensorBoard's HPARAMS tab, when this writer
    started the run's TensorBoard log (not again on a resume); returns whether it wrote them."""
    if not (self._tb and self._fresh):
      return False
    experiment, session_start, _ = tb_summary.hparams(
        flat_hparams(config_dict), {tag(m): 0.0 for m in metrics}
    )
    self._tb.file_writer.add_summary(experiment)
    self._tb.file_writer.add_summary(session_start)
    return True

  def write_session_end(self) -> None:
    """Marks the HPARAMS session finished (the training is over)."""
    if self._tb:
      _, _, session_end = tb_summary.hparams({}, {})
      self._tb.file_writer.add_summary(session_end)

  def close(self):
    if self._file:
      self._file.close()
    if self._tb:
      self._tb.close()
