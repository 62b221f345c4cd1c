"""Evaluation results in TensorBoard: `RUN/eval/<name>/step_<S>/tensorboard`, written with tensorboardX (the
library the training loop's metric writer uses; optional, like there).

Every metric is a scalar at the checkpoint's step, so evaluations of successive checkpoints plot as
curves over training, in the `eval/` group beside training's `train/`: per setting of the sweep
`eval/<transform>/<noise variance>/<evaluator>/<metric>`, and the metrics of the evaluators that run
once `eval/<evaluator>/<metric>` (tensorboardX writes `:` as `_`). Every picture the evaluators
wrote is an image under `eval/images/<title>`. Only process 0 writes. Nothing here computes a
result: it copies the report's metrics. The report folder may be a URI (privjax.paths): the event
files then go through etils.epath (privjax.train.writer.summary_writer), and so do the pictures
read back.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from privjax import paths
from privjax.metrics import results
from privjax.train import writer as writer_lib

try:
  import tensorboardX
except ImportError:  # TensorBoard is optional; the report files are always written.
  tensorboardX = None


def scalars(metrics: dict, prefix: str):
  """(tag, value) for every metric with a finite value."""
  for name, m in metrics.items():
    value = results.as_metric(m).value
    if math.isfinite(value):
      yield f'{prefix}/{name}', value


class EvalWriter:
  """Writes one evaluation's metrics at its checkpoint's step; a no-op without tensorboardX or off
  process 0."""

  def __init__(self, out_dir: str, step: int):
    self.out_dir = out_dir
    self.step = int(step)
    self._writer = None
    if tensorboardX is not None and jax.process_index() == 0:
      self._writer = writer_lib.summary_writer(paths.join(out_dir, 'tensorboard'))

  def setting(self, entry: dict) -> None:
    if self._writer is None:
      return
    for tag, value in scalars(entry['metrics'], f'eval/{entry["name"]}'):
      self._writer.add_scalar(tag, value, self.step)

  def once(self, report: dict) -> None:
    if self._writer is None:
      return
    for tag, value in scalars(report['once'], 'eval'):
      self._writer.add_scalar(tag, value, self.step)
    for title, filename in report.get('images', {}).items():
      self._add_image(f'eval/images/{title}', paths.join(self.out_dir, filename))

  def _add_image(self, tag: str, path: str) -> None:
    from PIL import Image

    path = paths.as_path(path)
    if path.exists():
      with path.open('rb') as f, Image.open(f) as image:
        pixels = np.asarray(image.convert('RGB'))
      self._writer.add_image(tag, pixels, self.step, dataformats='HWC')

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
