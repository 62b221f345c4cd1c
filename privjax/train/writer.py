"""Metric writing: JSON lines in the workdir and, when tensorboardX is installed, TensorBoard.

Only process 0 writes, so multi-host runs log once. No jax array reaches a file: callers pass plain
floats.
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


class MetricWriter:

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self._file = open(os.path.join(workdir, 'metrics.jsonl'), 'a') if self.enabled else None
    self._tb = (
        tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))
        if self.enabled and tensorboardX
        else None
    )

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
