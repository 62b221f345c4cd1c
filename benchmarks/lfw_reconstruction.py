r"""The LFW reconstruction / re-identification / open-set tables from the reports of
benchmarks/lfw_reconstruction.sh (and the closed-set attackers of benchmarks/lfw_target_seeds.sh).

  python -m benchmarks.lfw_reconstruction runs/frontier_lfw_quick \
      [--seed_dirs runs/lfw_seeds/seed1,runs/lfw_seeds/seed2] \
      [--out benchmarks/results/lfw_reconstruction.md]

Reads `<dir>/<run>/eval/{recon_lfw_clean,recon_lfw_deployed,target_full,target}/report.json` for the
runs `none` and `siamese_1`, and the closed-set reports of the other seeds' directories. Every
accuracy is a report's, with the binomial standard error the report carries; PSNR and SSIM are the
reports' means over the images (the reports carry no spread for them).
"""

from __future__ import annotations

import argparse
import os
import statistics

import ml_collections

from privjax.evaluate import protocol
from privjax.report import tables

RUNS = ('none', 'siamese_1')
CLEAN, DEPLOYED = 'recon_lfw_clean', 'recon_lfw_deployed'
CLOSED = ('target_full', 'target')


def _load(d, run, name):
  """The report of `run`'s evaluation named `name` (an eval config's name is what places it)."""
  eval_config = ml_collections.ConfigDict({'name': name})
  return tables.load_report(protocol.report_dir(os.path.join(d, run), eval_config))


def _pct(value, se, n=None) -> str:
  """'p ± se' in %; a rate of 0 out of `n` (whose binomial standard error is 0) says 0/n and the
  one-sided 95% upper bound 3/n (the rule of three) instead."""
  if value == 0 and n:
    return f'0/{n} (< {300 / n:.1f})'
  return f'{100 * value:.1f} ± {100 * se:.1f}'


def _entry(report, transform, noise):
  (e,) = [e for e in report['sweep'] if (e['transform'], e['noise_variance']) == (transform, noise)]
  return e


def strongest_closed(reports, transform, noise, secret='identity'):
  """(top1, top1_se, family) of the strongest closed-set attacker over `reports` at the setting."""
  best = None
  for report in reports:
    attack = _entry(report, transform, noise)['attacks'][secret]
    if best is None or attack['top1'] > best[0]:
      best = (attack['top1'], attack['top1_se'], attack['strongest'])
  return best


def reconstruction_table(d) -> str:
  lines = [
      '| run | uploads attacked | method | images | PSNR (dB) | SSIM | re-identification top-1 '
      '(%) | same classifier on the originals (%) |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for run in RUNS:
    clean, deployed = _load(d, run, CLEAN), _load(d, run, DEPLOYED)
    inv_c, inv_d = clean['inversion'], deployed['inversion']
    reid_c, reid_d = clean['reidentify'], deployed['reidentify']
    # rMLE's images are one subset (drawn with the eval seed) in both evaluations.
    assert inv_c['num_images'] == inv_d['num_images']
    assert reid_c['methods']['inversion']['ceiling'] == reid_d['methods']['inversion']['ceiling']
    n = inv_c['num_images']

    def reid(r, method):
      m = r['methods'][method]
      c = m['ceiling']
      return (
          f'{_pct(m["top1"], m["top1_se"], m["num_test"])} | '
          f'{_pct(c["top1"], c["top1_se"], c["num_test"])}'
      )

    rec = deployed['reconstruction']
    dd = _entry(deployed, inv_d['transform'], inv_d['noise_variance'])['deployed_decoder']
    n_all = reid_d['methods']['decoder']['num_test']
    here = f'{inv_c["transform"]}, σ² = {inv_c["noise_variance"]:g}'
    there = f'{inv_d["transform"]}, σ² = {inv_d["noise_variance"]:g}'
    rows = [
        (here, 'learned decoder', n_all, rec, reid(reid_d, 'decoder')),
        (here, "learned decoder, on rMLE's images", n, inv_d['decoder'], '– | –'),
        (
            here,
            f'rMLE ({inv_c["steps"]} steps, TV {inv_c["tv_weight"]:g})',
            n,
            inv_c,
            reid(reid_c, 'inversion'),
        ),
        (here, "attacker's mean image (no information)", n, inv_c['mean_image'], '– | –'),
        (
            there,
            'learned decoder trained on these uploads',
            n_all,
            dd,
            reid(reid_d, 'decoder_deployed'),
        ),
        (
            there,
            f'rMLE ({inv_d["steps"]} steps, TV {inv_d["tv_weight"]:g})',
            n,
            inv_d,
            reid(reid_d, 'inversion'),
        ),
    ]
    for where, method, count, q, cells in rows:
      lines.append(
          f'| {run} | {where} | {method} | {count} | {q["psnr"]:.2f} | {q["ssim"]:.3f} | {cells} |'
      )
  originals = reid_d['originals']
  head = (
      "Attacker-test images of the LFW photos (training seed 0, the quick frontier's runs). "
      f'Re-identification: a `{reid_d["family"]}` identity classifier trained on the attacker\'s raw '
      "training images, applied to each method's images; the last column is its top-1 on the "
      f'originals of the same images (the ceiling; on all {originals["num_test"]}: '
      f'{_pct(originals["top1"], originals["top1_se"])}%). Chance '
      f'{100 * reid_d["chance_top1"]:.2f}%, majority class {100 * reid_d["majority_top1"]:.2f}%. '
      'Accuracies ± binomial standard error (0/n: none right, with the 95% upper bound 3/n); '
      'PSNR and SSIM are means over the images. rMLE inverts '
      'the extractor the device runs, followed by the PCA and the noise of the setting.\n\n'
  )
  return head + '\n'.join(lines) + '\n'


def identity_table(d, seed_dirs) -> str:
  """Open-set identity at every setting of the deployed evaluation, beside the closed-set strongest
  attacker (seed 0 with its standard error, and mean ± sd over `d` and `seed_dirs`)."""
  n_seeds = 1 + len(seed_dirs)
  lines = [
      '| run | transform | σ² | gender (cloud head) | closed-set identity top-1, seed 0 '
      f'(attacker) | closed-set, {n_seeds} seeds | open-set TAR @ FAR = 1e-3 | TAR @ FAR = 1e-2 | '
      'open-set gallery top-1 |',
      '|---|---|---|---|---|---|---|---|---|',
  ]
  chance = people = probes = None
  for run in RUNS:
    r = _load(d, run, DEPLOYED)
    closed = {x: [_load(x, run, n) for n in CLOSED] for x in (d, *seed_dirs)}
    for e in r['sweep']:
      t, v = e['transform'], e['noise_variance']
      o = e['open_set']
      chance, people, probes = o['chance_top1'], o['num_people'], o['num_probe']
      top1, se, family = strongest_closed(closed[d], t, v)
      over = [100 * strongest_closed(closed[x], t, v)[0] for x in closed]
      spread = (
          f'{statistics.mean(over):.1f} ± {statistics.stdev(over):.1f}' if len(over) > 1 else '–'
      )
      tar = o['tar_at_far']
      lines.append(
          f'| {run} | {t} | {v:g} | {100 * e["primary_head_accuracy"]:.1f} | '
          f'{_pct(top1, se)} ({family}) | {spread} | '
          f'{_pct(tar["0.001"]["tar"], tar["0.001"]["tar_se"], tar["0.001"]["num_genuine"])} | '
          f'{_pct(tar["0.01"]["tar"], tar["0.01"]["tar_se"], tar["0.01"]["num_genuine"])} | '
          f'{_pct(o["gallery_top1"], o["gallery_top1_se"])} |'
      )
  head = (
      'Identity on the LFW photos, % ± binomial standard error (seed 0). Closed set: the strongest '
      f'attacker over the evaluations {" and ".join(CLOSED)} on the attacker\'s own people '
      f'(mean ± sd over {n_seeds} training seeds beside it). Open set: an MLP embedding learned on '
      f"the attacker's people, matched on {people} people it never saw ({probes} probe images "
      f"against one gallery image each; gallery chance {100 * chance:.1f}%). The cloud head's "
      "gender accuracy is on this evaluation's own noise draw (the seed table's, on target_full's)."
      '\n\n'
  )
  return head + '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('dir')
  parser.add_argument('--seed_dirs', default='runs/lfw_seeds/seed1,runs/lfw_seeds/seed2')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  seed_dirs = [x for x in args.seed_dirs.split(',') if x]
  text = (
      '### Reconstructions and their re-identification\n\n'
      + reconstruction_table(args.dir)
      + '\n### Open-set and closed-set identity\n\n'
      + identity_table(args.dir, seed_dirs)
  )
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
