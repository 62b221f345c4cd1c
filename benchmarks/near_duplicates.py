"""How far apart photos are in the near-duplicate test of the photo builders, and what it costs.

    python benchmarks/near_duplicates.py --csv ../shared/data/lfw_faces/labels.csv \
        [--out benchmarks/results/near_duplicates.md] [--size 64] [--sample 300] [--seed 0]

`privjax.data.photo_builder` drops an image whose grey 16x16 thumbnail (box averages of the face
as prepared, `image_size` pixels) lies within NEAR_RMS grey levels (RMS) of a kept one's. This
measures, on the photos of an `image_folder` CSV:

* the distance from each photo to the nearest other one (all pairs, brute force), and the
  closest pairs by name;
* the distance from `--sample` photos (drawn with `--seed`) to copies of themselves edited the
  ways a user's folder holds copies: re-encoded as JPEG or PNG, resized, turned grey, brightened,
  mirrored, cropped;
* the time `photo_builder.near_pairs` takes for all the photos (the brute force is this script's).

It writes a markdown table to --out (and prints it).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time

import numpy as np
from PIL import Image

try:
  import privjax  # noqa: F401
except ImportError:  # run from a checkout without installing the package
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from privjax.data import photo_builder


def thumb(source, size: int) -> np.ndarray:
  """The builder's thumbnail of a file (a path or a file object)."""
  face = photo_builder.load_face(source, size, 1.0)
  side = photo_builder.NEAR_THUMB
  return np.asarray(face.convert('L').resize((side, side), Image.Resampling.BOX), np.uint8).ravel()


def _encoded(image: Image.Image, fmt: str, **kwargs) -> io.BytesIO:
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  buffer.seek(0)
  return buffer


def _brighter(image, levels):
  return Image.fromarray(np.clip(np.asarray(image, np.int16) + levels, 0, 255).astype(np.uint8))


EDITS = {
    'JPEG quality 95': lambda im: _encoded(im, 'JPEG', quality=95),
    'JPEG quality 75': lambda im: _encoded(im, 'JPEG', quality=75),
    'JPEG quality 50': lambda im: _encoded(im, 'JPEG', quality=50),
    'PNG': lambda im: _encoded(im, 'PNG'),
    'resized to 80%, JPEG 90': lambda im: _encoded(
        im.resize((im.width * 4 // 5, im.height * 4 // 5), Image.Resampling.LANCZOS),
        'JPEG',
        quality=90,
    ),
    'grey': lambda im: _encoded(im.convert('L'), 'PNG'),
    'brighter by 3 levels': lambda im: _encoded(_brighter(im, 3), 'PNG'),
    'brighter by 5 levels': lambda im: _encoded(_brighter(im, 5), 'PNG'),
    'mirrored': lambda im: _encoded(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 'PNG'),
    'cropped to 90%': lambda im: _encoded(
        im.crop((im.width // 20, im.height // 20, im.width * 19 // 20, im.height * 19 // 20)),
        'PNG',
    ),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--csv', required=True)
  parser.add_argument('--out', default=os.path.join('benchmarks', 'results', 'near_duplicates.md'))
  parser.add_argument('--size', type=int, default=64)
  parser.add_argument('--sample', type=int, default=300)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  folder = os.path.dirname(os.path.abspath(args.csv))
  with open(args.csv) as f:
    paths = [os.path.join(folder, row['path']) for row in csv.DictReader(f)]
  start = time.perf_counter()
  thumbs = np.stack([thumb(p, args.size) for p in paths])
  thumb_s = time.perf_counter() - start
  start = time.perf_counter()
  pairs = photo_builder.near_pairs(thumbs)
  pairs_s = time.perf_counter() - start

  x = thumbs.astype(np.float64)
  sq = (x * x).sum(1)
  d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0) / x.shape[1])
  np.fill_diagonal(d, np.inf)
  nearest = d.min(1)
  upper = d[np.triu_indices(len(d), 1)]
  closest = np.argsort(upper)[:8]
  rows, cols = np.triu_indices(len(d), 1)

  rng = np.random.default_rng(args.seed)
  sample = rng.choice(len(paths), min(args.sample, len(paths)), replace=False)
  edits = {}
  for name, edit in EDITS.items():
    dist = []
    for i in sample:
      with Image.open(paths[i]) as im:
        copy = thumb(edit(im.convert('RGB')), args.size)
      dist.append(np.sqrt(((copy.astype(np.float64) - x[i]) ** 2).mean()))
    edits[name] = np.asarray(dist)

  rel = lambda p: os.path.relpath(p, folder)  # noqa: E731
  lines = [
      f'Near-duplicate distances on {len(paths)} photos of `{args.csv}` at {args.size}x{args.size} '
      f'(`python benchmarks/near_duplicates.py --csv {args.csv} --size {args.size} '
      f'--sample {args.sample} --seed {args.seed}`). Distance: RMS difference, in grey levels, of '
      f'the {photo_builder.NEAR_THUMB}x{photo_builder.NEAR_THUMB} grey thumbnails; the builder '
      f'drops a photo within NEAR_RMS = {photo_builder.NEAR_RMS:g} of a kept one.',
      '',
      '| photos compared | min | 0.1% | 1% | median | pairs <= NEAR_RMS |',
      '|---|---:|---:|---:|---:|---:|',
      '| each photo to the nearest other one | '
      + ' | '.join(f'{v:.2f}' for v in (nearest.min(), *np.percentile(nearest, [0.1, 1, 50])))
      + f' | {len(pairs)} |',
      '',
      f'| a photo to its edited copy ({len(sample)} photos, seed {args.seed}) | median | 99% | max '
      '| caught |',
      '|---|---:|---:|---:|---:|',
  ]
  for name, dist in edits.items():
    caught = f'{(dist <= photo_builder.NEAR_RMS).mean():.0%}'
    lines.append(
        f'| {name} | {np.median(dist):.2f} | {np.percentile(dist, 99):.2f} | {dist.max():.2f} '
        f'| {caught} |'
    )
  lines += ['', '| closest pairs of distinct files | distance |', '|---|---:|']
  lines += [f'| {rel(paths[rows[k]])} ~ {rel(paths[cols[k]])} | {upper[k]:.2f} |' for k in closest]
  lines += [
      '',
      f'Time: thumbnails {thumb_s:.1f} s (one thread; the builder computes them while it checks '
      f'each image), `near_pairs` {pairs_s:.2f} s for {len(paths)} photos.',
  ]
  text = '\n'.join(lines) + '\n'
  os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
  with open(args.out, 'w') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  main()
