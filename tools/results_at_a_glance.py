r"""README's "Results at a glance" table, read from the committed result files.

  python tools/results_at_a_glance.py          # rewrite the table in README.md
  python tools/results_at_a_glance.py --check  # exit 1 when README's table differs

Each entry of ROWS is one line: what was measured, the result file under `benchmarks/results/`
that the entry's command writes, how to read the headline value from that file (a function of a
`Result`: a cell of one of its markdown tables, a regular expression, a JSON value), the command,
and the docs page that explains it. A new result is one more line in ROWS. Only files measured by
the current code belong there: a result the docs mark as produced before a change and not re-run
stays out until it is re-run. The table sits in README.md between MARK_BEGIN and MARK_END;
`tests/test_readme_tables.py` runs the check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Callable, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK_BEGIN = '<!-- results at a glance: python tools/results_at_a_glance.py -->'
MARK_END = '<!-- end results at a glance -->'


class Result:
  """One result file, and the ways a row reads its value."""

  def __init__(self, path: str):
    self.path = path
    with open(path) as f:
      self.text = f.read()

  def _tables(self) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table of the file as (header, rows), `**` removed from the cells."""
    tables, lines = [], self.text.split('\n') + ['']
    start = None
    for i, line in enumerate(lines):
      if line.startswith('|') and start is None:
        start = i
      elif not line.startswith('|') and start is not None:
        cells = [
            [c.strip().replace('**', '') for c in l.strip('|').split('|')] for l in lines[start:i]
        ]
        if len(cells) > 1 and set(''.join(cells[1])) <= set('-: '):
          tables.append((cells[0], cells[2:]))
        start = None
    return tables

  def _row(self, label: str, column: str | None = None) -> tuple[list[str], list[str]]:
    """The first table row whose leading cells, joined by ' | ', start with `label` (in a table
    with `column`, if given)."""
    for header, rows in self._tables():
      if column is not None and column not in header:
        continue
      for row in rows:
        if ' | '.join(row).startswith(label):
          return header, row
    raise KeyError(f'{self.path}: no table row starts with {label!r}')

  def cell(self, label: str, column: str) -> str:
    """The cell under `column` of the row that starts with `label`."""
    try:
      header, row = self._row(label, column)
    except KeyError:
      header, row = self._row(label)  # the row exists, the column does not: say which
    if column not in header:
      raise KeyError(f'{self.path}: the row {label!r} has no column {column!r} ({header})')
    return row[header.index(column)]

  def row(self, label: str) -> str:
    """The row that starts with `label`, as 'column value' pairs after its first cell."""
    header, row = self._row(label)
    return '; '.join(f'{h} {v}' for h, v in zip(header[1:], row[1:]))

  def column(self, label: str, column: str) -> list[str]:
    """Every cell under `column` in the table whose rows start with `label`."""
    for header, rows in self._tables():
      if column in header and any(' | '.join(r).startswith(label) for r in rows):
        return [r[header.index(column)] for r in rows]
    raise KeyError(f'{self.path}: no table with column {column!r} and a row {label!r}')

  def match(self, pattern: str) -> str:
    """Group 1 of the first match of `pattern` (multi-line)."""
    m = re.search(pattern, self.text, re.M)
    if m is None:
      raise KeyError(f'{self.path}: nothing matches {pattern!r}')
    return m.group(1)

  def json(self, dotted: str):
    """The value at a dotted path ('results.0.images_per_s') of a JSON file."""
    value = json.loads(self.text)
    for key in dotted.split('.'):
      value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def span(values: list[str]) -> str:
  numbers = sorted(float(v.replace(',', '')) for v in values)
  return f'{numbers[0]:g}–{numbers[-1]:g}'


class Row(NamedTuple):
  result: str
  file: str
  value: Callable[[Result], str]
  command: str
  page: str


R = 'benchmarks/results/'
LFW = 'configs/lfw_photos.py:csv=../shared/data/lfw_faces/labels.csv'
# fmt: off
ROWS = (
    Row('A pretrained face recogniser (dlib) re-identifying LFW attacker-test photos at 64 px, 305 people: top-1 (%)', R + 'face_recognition_ceiling.md', lambda r: f"{r.cell('64 | learned crop', 'test top-1 (%)')} (raw pixels, nearest neighbour: {r.cell('64 | raw pixels', 'test top-1 (%)')}; chance {r.cell('64 | raw pixels', 'chance top-1 (%)')})", 'python -m benchmarks.face_recognition_ceiling --csv ../shared/data/lfw_faces/labels.csv --sizes 64,112 --seed 0', R + 'face_recognition_ceiling.md'),
    Row('Linear gender probe on frozen VGG-16 features of LFW photos at 64 px: top-1 (%)', R + 'imagenet_probe.md', lambda r: f"ImageNet pool3 {r.cell('imagenet | pool3', 'gender top-1 (%)')}; random-init pool3 {r.cell('random init | pool3', 'gender top-1 (%)')}; raw pixels {r.cell('raw pixels', 'gender top-1 (%)')}", f'python benchmarks/imagenet_probe.py --config {LFW}', R + 'imagenet_probe.md'),
    Row('Duplicate photos among the 5,626 LFW photos (16×16 grey thumbnails within NEAR_RMS)', R + 'near_duplicates.md', lambda r: f"{r.cell('each photo to the nearest other one', 'pairs <= NEAR_RMS')} pairs; a JPEG-50 copy caught {r.cell('JPEG quality 50', 'caught')}, a mirrored one {r.cell('mirrored', 'caught')}", 'python benchmarks/near_duplicates.py --csv ../shared/data/lfw_faces/labels.csv --size 64 --sample 300 --seed 0', 'docs/data.md'),
    Row('Training step, `vgg_mini`, 32 pairs, 2 CPU cores: images/s (privjax / best PyTorch setting)', R + 'speed_cpu_2core.md', lambda r: f"{r.cell('privjax train step', 'images/s')} ({r.match(r'median ([0-9.]+),')}×)", 'python -m benchmarks.train_step --models vgg_mini', 'docs/speed.md'),
    Row('Training step, VGG-16 at 224 px, 64 pairs, bf16, one H200: images/s (privjax / `torch.compile`)', R + 'speed_h200.md', lambda r: f"{r.cell('vgg16', 'privjax train').removesuffix(' images/s')} ({r.cell('vgg16', 'privjax / torch.compile')}×)", 'python -m benchmarks.train_step --models vgg16,vgg_mini --batch 64 --dtype bfloat16 --skip pipeline --windows 5', 'docs/speed.md'),
    Row('Input pipeline at 224 px: host CPUs to feed VGG-16 at its H200 rate', R + 'pipeline_224.md', lambda r: span(r.column('1 | 8 threads', 'CPUs for 4,207 images/s')), 'python -m benchmarks.train_step --models vgg16 --skip step,attack,torch --pipeline-cpus 1,2', 'docs/speed.md'),
    Row('`pca_linear` attacker on a 13,233 × 401,408 float16 feature store (VGG-16 `conv4_3` size, 600 classes), 6 GB budget', R + 'streaming_eval_full_pca.md', lambda r: f"{r.cell('pca_linear on the codes', 'result')}; peak RSS {r.cell('pca_linear on the codes', 'peak RSS GB')} GB", 'python -m benchmarks.streaming_eval_full --skip streaming_linear,inmemory,extract --budget-gb 6', 'docs/evaluation.md'),
    Row('LFW `none` (`vgg_mini_photo`, `conv4_2`, seed 0), noiseless: SSIM of the deeper reconstruction decoder (width 256, residual blocks) against the attacker\'s mean image', R + 'lfw_decoder.md', lambda r: f"{r.cell('none | none/0 | decoder_l1_ssim_aug', 'SSIM')} against {r.cell('none | none/0 | attacker', 'SSIM')}", 'python -m privjax eval --workdir runs/lfw/none --config configs/eval/lfw_decoder.py', 'docs/results_lfw_reconstruction.md'),
    Row('LFW `none`, noiseless: dlib\'s face recogniser naming the deeper decoder\'s reconstructions, top-1 (%)', R + 'lfw_decoder.md', lambda r: f"{r.cell('none | none/0 | decoder_l1_ssim_aug', 'face re-id top-1 (%)')} (the originals: {r.cell('none | none/0 | originals', 'face re-id top-1 (%)')})", 'python -m privjax eval --workdir runs/lfw/none --config configs/eval/lfw_decoder.py', 'docs/results_lfw_reconstruction.md'),
    Row('LFW: identity top-1 (%) of the attacker\'s own PCA + linear classifier pooling k = 1 and 8 photos of one person: `none` noiseless; `siamese_1` at PCA-32 + σ² 0.1 (the LFW target judged by accounts)', R + 'lfw_accounts.md', lambda r: '; '.join(f"{r.cell(at, 'pca_linear top-1 (%) k = 1')} → {r.cell(at, 'pca_linear top-1 (%) k = 8')}" for at in ('none | none/0', 'siamese_1 | pca:32/0.1')) + f" (gender {r.cell('none', 'none/0')} → {r.cell('siamese_1', 'pca:32/0.1')})", 'python -m privjax eval --workdir runs/lfw/siamese_1 --config configs/eval/lfw_accounts.py', 'docs/results_lfw_reconstruction.md'),
    Row('Bad inputs and faults handled, each a test case', R + 'fault_cases.md', lambda r: r.match(r'^(\d+ cases in \d+ categories)'), 'python tools/fault_table.py', 'docs/faults.md'),
)
# fmt: on


def table(root: str = ROOT) -> str:
  """The markdown table of ROWS, each value read from its file under `root`."""
  lines = ['| result | value | command | source |', '|---|---|---|---|']
  for row in ROWS:
    value = row.value(Result(os.path.join(root, row.file)))
    source = f'[{os.path.basename(row.file)}]({row.file})'
    if row.page != row.file:
      source += f', [{os.path.basename(row.page)}]({row.page})'
    lines.append(f'| {row.result} | {value} | `{row.command}` | {source} |')
  return '\n'.join(lines) + '\n'


def render(readme: str, root: str = ROOT) -> str:
  """`readme` with the text between the markers replaced by the current table."""
  begin, end = readme.find(MARK_BEGIN), readme.find(MARK_END)
  if begin < 0 or end < begin:
    raise ValueError(f'README has no {MARK_BEGIN} ... {MARK_END} block')
  return readme[: begin + len(MARK_BEGIN)] + '\n' + table(root) + readme[end:]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--check', action='store_true')
  args = parser.parse_args()
  path = os.path.join(ROOT, 'README.md')
  with open(path) as f:
    readme = f.read()
  rendered = render(readme)
  if args.check:
    if rendered != readme:
      print(
          "README's results at a glance differ: run python tools/results_at_a_glance.py",
          file=sys.stderr,
      )
      sys.exit(1)
    return
  with open(path, 'w') as f:
    f.write(rendered)


if __name__ == '__main__':
  main()
