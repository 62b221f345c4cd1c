r"""The re-identification ceiling of a pretrained face recogniser on the LFW photos.

  python -m benchmarks.face_recognition_ceiling --csv /path/to/lfw_faces/labels.csv \
      [--sizes 64,112] [--seed 0] [--val_fraction 0.34] [--data_dir DIR] [--limit N]

The data set is prepared through privjax exactly as for training (`configs/lfw_photos.py` with
`csv=`, at each image size in `--sizes`: 64 is the model's, 112 the photos' stored size), and the
`attacker_train` / `attacker_test` images are preprocessed as the evaluation does
(`privjax.evaluate.features.split_images`). dlib's descriptor (`privjax.attacks.face_recognition`)
identifies each attacker-test photo by its nearest attacker-train photo (the gallery: every
person of attacker-test has photos there).

Two crops: the whole image resized to the 150x150 chip, and one fixed crop learned from
attacker-train photos (dlib's landmarks, the mean chip). The crop is chosen on attacker-train
alone: a stratified `--val_fraction` of each person's attacker-train photos are probes against the
rest, the learned crop is fitted on that rest, and the higher val top-1 wins (ties: the whole
image). The same crop then serves the test; both crops' test numbers are printed, the choice
marked. Raw pixels (nearest neighbour, Euclidean) are the reference without a recogniser.
Standard errors are binomial over the probe photos. A second table pools k attacker-test photos
of one person (an account) into their mean descriptor (`privjax.attacks.accounts`, the chosen
crop, groups drawn with `--seed`), with standard errors clustered by person. Seconds per image cover chip extraction and
the descriptor, on whatever machine runs it (state its load beside the numbers).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from privjax import config_args
from privjax.attacks import accounts, common
from privjax.attacks import face_recognition as fr
from privjax.data import pipeline
from privjax.evaluate import features

CONFIG = 'configs/lfw_photos.py'


def _split(builder, config, split, limit):
  images = features.split_images(builder, config, split)
  labels = np.asarray(pipeline.load_split(builder, split).labels['identity'])
  if limit:
    images, labels = images[:limit], labels[:limit]
  return images.astype(np.float32) / 255.0, labels


def _pct(r, key):
  return f'{100 * r[key]:.1f} ± {100 * r[key + "_se"]:.1f}'


def measure(csv: str, size: int, *, seed: int, val_fraction: float, data_dir: str, limit: int):
  config = config_args.config_module(CONFIG).get_config(f'csv={csv}')
  config.model.image_size = size
  config.dataset.data_dir = data_dir
  builder = pipeline.get_builder(config.dataset)
  x_tr, y_tr = _split(builder, config, 'attacker_train', limit)
  x_te, y_te = _split(builder, config, 'attacker_test', limit)
  fit_idx, val_idx = common.train_val_split(len(y_tr), val_fraction, seed, y_tr)
  start = time.perf_counter()
  learned = fr.fit_alignment(x_tr[fit_idx])
  fit_seconds = time.perf_counter() - start
  crops = {'whole image': fr.WHOLE_IMAGE, 'learned crop': learned}
  rows, embedded = {}, {}
  for name, alignment in crops.items():
    recognizer = fr.FaceRecognizer(alignment)
    e_tr = recognizer.embed(x_tr)
    e_te = recognizer.embed(x_te)
    val = fr.identify(e_tr[val_idx], y_tr[val_idx], e_tr[fit_idx], y_tr[fit_idx])
    test = fr.identify(e_te, y_te, e_tr, y_tr)
    rows[name] = (val, test, recognizer.seconds / recognizer.images_embedded)
    embedded[name] = (e_tr, e_te)
  chosen = max(crops, key=lambda n: (rows[n][0]['top1'], n == 'whole image'))
  e_tr, e_te = embedded[chosen]
  pooled = accounts.pooled_embedding_top1(e_te, y_te, e_tr, y_tr, seed=seed)
  pixels = fr.identify(x_te.reshape(len(x_te), -1), y_te, x_tr.reshape(len(x_tr), -1), y_tr)
  return {
      'size': size,
      'rows': rows,
      'chosen': chosen,
      'pixels': pixels,
      'pooled': pooled,
      'learned': learned,
      'fit_seconds': fit_seconds,
      'num_fit': len(fit_idx),
      'num_val': len(val_idx),
  }


def table(results) -> str:
  lines = [
      '| image size | input to the recogniser | val top-1 (%) | test top-1 (%) | test top-5 (%) '
      '| chance top-1 (%) | people / gallery / probes | s per image |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for r in results:
    for name, (val, test, seconds) in r['rows'].items():
      mark = ' (chosen)' if name == r['chosen'] else ''
      lines.append(
          f'| {r["size"]} | {name}{mark} | {_pct(val, "top1")} | {_pct(test, "top1")} | '
          f'{_pct(test, "top5")} | {100 * test["chance_top1"]:.2f} | {test["num_people"]} / '
          f'{test["num_gallery"]} / {test["num_probes"]} | {seconds:.3f} |'
      )
    p = r['pixels']
    lines.append(
        f'| {r["size"]} | raw pixels, nearest neighbour | - | {_pct(p, "top1")} | '
        f'{_pct(p, "top5")} | {100 * p["chance_top1"]:.2f} | {p["num_people"]} / '
        f'{p["num_gallery"]} / {p["num_probes"]} | - |'
    )
  first = results[0]
  notes = [
      '',
      f'Val: attacker-train only, {first["num_val"]} probes against the other {first["num_fit"]} '
      'photos (per size). Learned crops (centre x, centre y, side as fractions of the image side; '
      'angle in radians; photos with a detected face / photos fitted on):',
  ]
  for r in results:
    a = r['learned']
    notes.append(
        f'- {r["size"]}x{r["size"]}: centre ({a.center_x:.3f}, {a.center_y:.3f}), side '
        f'{a.side:.3f}, angle {a.angle:+.3f}; {a.num_fitted} / {r["num_fit"]} '
        f'({r["fit_seconds"]:.0f} s)'
    )
  pooled = [
      '',
      '| image size | photos per account (k) | people | accounts (groups) | top-1 (%), SE by person '
      '| binomial SE over groups |',
      '|---|---|---|---|---|---|',
  ]
  for r in results:
    for k, p in r['pooled'].items():
      top1 = '-' if p['top1'] is None else f'{100 * p["top1"]:.1f}'
      se = '-' if p['top1_se'] is None else f'{100 * p["top1_se"]:.1f}'
      binomial = '-' if p['top1_se_binomial'] is None else f'{100 * p["top1_se_binomial"]:.1f}'
      pooled.append(
          f'| {r["size"]} | {k} | {p["num_people"]} | {p["num_groups"]} | {top1} ± {se} | '
          f'{binomial} |'
      )
  return '\n'.join(lines + notes + pooled) + '\n'


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--csv', required=True, help='the LFW photos labels.csv (image_folder format)')
  ap.add_argument('--sizes', default='64,112', help='image sizes, comma-separated')
  ap.add_argument('--seed', type=int, default=0, help='seed of the val split of attacker-train')
  ap.add_argument('--val_fraction', type=float, default=0.34)
  ap.add_argument('--data_dir', default='', help="TFDS data dir ('' = TFDS's default)")
  ap.add_argument('--limit', type=int, default=0, help='first N images of each split (smoke)')
  args = ap.parse_args()
  results = [
      measure(
          args.csv,
          int(s),
          seed=args.seed,
          val_fraction=args.val_fraction,
          data_dir=args.data_dir,
          limit=args.limit,
      )
      for s in args.sizes.split(',')
  ]
  print(table(results), end='')


if __name__ == '__main__':
  main()
