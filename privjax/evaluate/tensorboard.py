"""Evaluation results in TensorBoard: `RUN/eval/<name>/tensorboard`, written with tensorboardX (the
library the training loop's metric writer uses; optional, like there).

Per setting of the sweep, every numeric result is a scalar tagged `<transform>/<result path>` (for
example `pca_32/attacks/identity/top1`: tensorboardX writes `:` as `_`) at step = the setting's
index in the sweep; the text `settings` maps steps to (transform, noise variance). Results of the
evaluators that run once are scalars tagged `<result path>` at the checkpoint's step, and every PNG
they wrote (a path ending in `.png`, relative to the report folder) is an image (the reconstruction
grids). Only process 0 writes. Nothing here computes a result: it copies numbers out of the report.
The report folder may be a URI (privjax.paths): the event files then go through etils.epath
(privjax.train.writer.summary_writer), and so do the PNGs read back.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from privjax import paths
from privjax.train import writer as writer_lib

try:
  import tensorboardX
except ImportError:  # TensorBoard is optional; the report files are always written.
  tensorboardX = None

SKIP = ('transform', 'noise_variance')


def scalars(tree, prefix: str = ''):
  """(tag, float) for every finite number in a nested dict (keys starting with '_' skipped)."""
  if isinstance(tree, dict):
    for k, v in tree.items():
      if not str(k).startswith('_'):
        yield from scalars(v, f'{prefix}/{k}' if prefix else str(k))
  elif isinstance(tree, (bool, np.bool_)):
    return
  elif isinstance(tree, (int, float, np.integer, np.floating)) and math.isfinite(float(tree)):
    yield prefix, float(tree)


def pngs(tree, prefix: str = ''):
  """(tag, path) for every string ending in '.png' in a nested dict."""
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from pngs(v, f'{prefix}/{k}' if prefix else str(k))
  elif isinstance(tree, str) and tree.endswith('.png'):
    yield prefix, tree


class EvalWriter:
  """Writes one evaluation's results; a no-op without tensorboardX or off process 0."""

  def __init__(self, out_dir: str):
    self.out_dir = out_dir
    self._writer = None
    self._settings = []
    if tensorboardX is not None and jax.process_index() == 0:
      self._writer = writer_lib.summary_writer(paths.join(out_dir, 'tensorboard'))

  def setting(self, entry: dict, index: int) -> None:
    if self._writer is None:
      return
    self._settings.append(
        f'{index}: {entry["transform"]}, noise variance {entry["noise_variance"]:g}'
    )
    for tag, value in scalars({k: v for k, v in entry.items() if k not in SKIP}):
      self._writer.add_scalar(f'{entry["transform"]}/{tag}', value, index)

  def once(self, report: dict, produced: dict, step: int) -> None:
    if self._writer is None:
      return
    if self._settings:
      self._writer.add_text('settings', '  \n'.join(self._settings), step)
    for info in produced.values():
      if info['settings'] != 'once':
        continue
      results = {k: report[k] for k in info['keys'] if k in report}
      for tag, value in scalars(results):
        self._writer.add_scalar(tag, value, step)
      for tag, path in pngs(results):
        self._add_image(tag, paths.join(self.out_dir, path), step)

  def _add_image(self, tag: str, path: str, step: int) -> None:
    from PIL import Image

    path = paths.as_path(path)
    if path.exists():
      with path.open('rb') as f, Image.open(f) as image:
        pixels = np.asarray(image.convert('RGB'))
      self._writer.add_image(tag, pixels, step, dataformats='HWC')

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
