"""Writes a folder of "your own photos" for `image_folder`, and optionally times preparing it.

    python -m benchmarks.make_photo_folder OUT_DIR [--identities 100 --per-identity 30]
        [--build TFDS_DIR]

Synthetic faces (`privjax.data.face_renderer.generate_faces`, 64x64) are upscaled to random
sizes of 80-160 px per side (not square) and saved as JPEGs (quality 90) under OUT_DIR/photos/,
with OUT_DIR/faces.csv listing `path,identity,gender,smiling` (identity as a name, gender as
female/male strings, smiling as 0/1) -- the layout a user's own photo folder would have.

With --build, prepares the image_folder data set from it into TFDS_DIR (gender primary, smiling
as an extra attribute, 64x64), timing the build, and prints one JSON line with the time and the
split sizes.  A second run with the same TFDS_DIR reuses the prepared data (time ~0).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import numpy as np
from PIL import Image

from privjax.data import face_renderer


def write_folder(out_dir: str, identities: int, per_identity: int, seed: int = 0) -> str:
  """Writes the photos and the CSV; returns the CSV's path."""
  data = face_renderer.generate_faces(identities, per_identity, 64, seed)
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(out_dir, 'photos'), exist_ok=True)
  rows = []
  for i, image in enumerate(data['image']):
    w, h = (int(v) for v in rng.integers(80, 161, 2))
    name = f'photos/{i:05d}.jpg'
    Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC).save(
        os.path.join(out_dir, name), quality=90
    )
    rows.append(
        [
            name,
            f'person_{int(data["identity"][i]):04d}',
            ['female', 'male'][int(data['gender'][i])],
            int(data['smiling'][i]),
        ]
    )
  path = os.path.join(out_dir, 'faces.csv')
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['path', 'identity', 'gender', 'smiling'])
    writer.writerows(rows)
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('out_dir')
  parser.add_argument('--identities', type=int, default=100)
  parser.add_argument('--per-identity', type=int, default=30)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--build', metavar='TFDS_DIR', help='prepare the data set and time it')
  args = parser.parse_args()
  start = time.perf_counter()
  csv_path = write_folder(args.out_dir, args.identities, args.per_identity, args.seed)
  result = {
      'csv': csv_path,
      'photos': args.identities * args.per_identity,
      'write_s': round(time.perf_counter() - start, 2),
  }
  if args.build:
    from privjax.data import image_folder

    start = time.perf_counter()
    builder = image_folder.build(data_dir=args.build, csv=csv_path, attributes=('smiling',))
    result['build_s'] = round(time.perf_counter() - start, 2)
    result['cpus'] = os.cpu_count()
    result['splits'] = {k: v.num_examples for k, v in builder.info.splits.items()}
  print(json.dumps(result))


if __name__ == '__main__':
  main()
