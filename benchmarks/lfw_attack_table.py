r"""The LFW attack tables (benchmarks/results/lfw_attacks.md) from the reports of
configs/eval/lfw_attacks.py: reconstructions and their re-identification, accounts, repeated uploads.

  python eval.py --workdir RUN --config configs/eval/lfw_attacks.py      (for each run)
  python benchmarks/lfw_attack_table.py RUN [RUN ...] [--out benchmarks/results/lfw_attacks.md]
  python -m benchmarks.lfw_attack_table RUN [RUN ...] --name lfw_accounts [--out ...]
      (configs/eval/lfw_accounts.py's evaluation: accounts for each family pooled, repeated uploads)
  python -m benchmarks.lfw_attack_table RUN [RUN ...] --name lfw_decoder [--out ...]
      (configs/eval/lfw_decoder.py's evaluation: the deeper decoder and its re-identification)

Reads `RUN/eval/lfw_attacks/report.json` (privjax.report.tables.load_report) for every run, and
writes, per run and setting: each reconstruction method's PSNR, SSIM and LPIPS over attacker-test
(mean ± standard error over the images) beside the attacker's mean image, with the identity top-1 of
the linear pixel classifier and of dlib's face recogniser on its images, the originals' top-1 as
the ceiling; the top-1 of accounts pooling k uploads of one person; the top-1 on the mean of k
uploads of one photo. Accuracies are % ± the reports' standard errors (binomial, or clustered by
person for accounts); the seeds and the time each evaluator took are the reports'.
"""

from __future__ import annotations

import argparse
import os

from privjax.report import tables

NAME = 'lfw_attacks'
OUT = 'benchmarks/results/lfw_attacks.md'


def _cell(m, digits: int = 1, scale: float = 1.0) -> str:
  if m is None:
    return '–'
  se = '' if m.get('se') is None else f' ± {scale * m["se"]:.{digits}f}'
  return f'{scale * m["value"]:.{digits}f}{se}'


def _methods(metrics: dict) -> list[str]:
  """The decoder methods of a setting's metrics ('decoder_<method>'), in the order they ran."""
  return list(
      dict.fromkeys(k.split('/')[1] for k in metrics if k.startswith('reconstruction/decoder_'))
  )


def _decoder_size(report) -> str:
  """', width W, B blocks' where the report records the decoder's size (reports made before the
  decoder had sizes ran the small one, width 64 without blocks)."""
  settings = report['eval_config'].get('reconstruction', {})
  if 'width' not in settings:
    return ''
  blocks = settings.get('blocks', 0)
  return f', width {settings["width"]}, {blocks} block{"" if blocks == 1 else "s"}'


def reconstruction_table(runs: dict) -> list[str]:
  lines = [
      '| run | setting | method | PSNR (dB) | SSIM | LPIPS | linear re-id top-1 (%) | '
      'face re-id top-1 (%) |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for run, report in runs.items():
    for e in report['settings']:
      m = e['metrics']
      if 'reconstruction/mean_image/ssim' not in m:
        continue

      def q(prefix, m=m):
        return (
            f'{_cell(m.get(f"reconstruction/{prefix}/psnr"), 2)} | '
            f'{_cell(m.get(f"reconstruction/{prefix}/ssim"), 3)} | '
            f'{_cell(m.get(f"reconstruction/{prefix}/lpips"), 3)}'
        )

      at = f'| {run} | {e["name"]} |'
      size = _decoder_size(report)
      lines.append(f"{at} attacker's mean image | {q('mean_image')} | – | – |")
      for method in _methods(m):
        lines.append(
            f'{at} {method}{size} | {q(method)} | {_cell(m.get(f"reidentify/{method}"))} | '
            f'{_cell(m.get(f"reidentify/face/{method}"))} |'
        )
      if 'inversion/rmle/ssim' in m:
        inv = report['details']['inversion'][e['name']]
        start = 'the decoder' if inv.get('init') == 'decoder' else f"the {inv.get('init')} image"
        n = inv['num_images']

        def qi(prefix, m=m):
          return (
              f'{_cell(m.get(f"inversion/{prefix}/psnr"), 2)} | '
              f'{_cell(m.get(f"inversion/{prefix}/ssim"), 3)} | '
              f'{_cell(m.get(f"inversion/{prefix}/lpips"), 3)}'
          )

        if 'inversion/decoder/ssim' in m:
          lines.append(f'{at} the decoder on the same {n} images | {qi("decoder")} | – | – |')
        lines.append(
            f'{at} rMLE from {start} ({n} images) | {qi("rmle")} | '
            f'{_cell(m.get("reidentify/inversion"))} | {_cell(m.get("reidentify/face/inversion"))} |'
        )
      lines.append(
          f'{at} originals (ceiling) | – | – | – | {_cell(m.get("reidentify/originals"))} | '
          f'{_cell(m.get("reidentify/face/originals"))} |'
      )
  return lines


def utility_table(runs: dict) -> list[str]:
  """The primary task's accuracy by the cloud head at every setting of every run."""
  first = next(iter(runs.values()))
  lines = [
      f'| run | {" | ".join(e["name"] for e in first["settings"])} |',
      '|---|' + '---|' * len(first['settings']),
  ]
  for run, report in runs.items():
    cells = ' | '.join(_cell(e['metrics'].get('head/accuracy')) for e in report['settings'])
    lines.append(f'| {run} | {cells} |')
  return lines


def utility_section(runs: dict) -> list[str]:
  primary = next(iter(runs.values()))['primary']
  title = f'### {primary.capitalize()} accuracy of the cloud head (%), per setting'
  return ['', title, '', *utility_table(runs)]


def _ks(metrics: dict, prefix: str) -> dict[int, dict]:
  out = {}
  for k, v in metrics.items():
    if k.startswith(prefix) and k[len(prefix) :].isdigit():
      out[int(k[len(prefix) :])] = v
  return dict(sorted(out.items()))


def k_table(runs: dict, prefix: str, what: str) -> list[str]:
  rows = []
  ks: set[int] = set()
  for run, report in runs.items():
    for e in report['settings']:
      found = _ks(e['metrics'], prefix)
      if found:
        rows.append((run, e['name'], found))
        ks |= set(found)
  ks_sorted = sorted(ks)
  lines = [
      f'| run | setting | {" | ".join(f"{what} k = {k}" for k in ks_sorted)} |',
      '|---|---|' + '---|' * len(ks_sorted),
  ]
  for run, setting, found in rows:
    cells = ' | '.join(_cell(found.get(k)) for k in ks_sorted)
    lines.append(f'| {run} | {setting} | {cells} |')
  notes = {
      (run, setting, k): m.get('note', '') for run, setting, found in rows for k, m in found.items()
  }
  if any(notes.values()):
    lines.append('')
    lines.append(
        'Groups: '
        + '; '.join(f'{run} {setting} k = {k}: {n}' for (run, setting, k), n in notes.items() if n)
        + '.'
    )
  return lines


def timing_lines(runs: dict) -> list[str]:
  lines = []
  for run, report in runs.items():
    ev = report['evaluators']
    parts = ', '.join(
        f'{name} {v["seconds"]:.0f} s wall / {v["cpu_seconds"]:.0f} s CPU'
        f'{" (with another evaluation beside it)" if v.get("cpu_shared") else ""}'
        for name, v in ev.items()
    )
    lines.append(
        f'- {run}: {report["seconds"]:.0f} s wall in all (after the features); {parts}. Seeds: '
        f'training {report["seeds"]["train"]}, evaluation {report["seeds"]["eval"]}.'
    )
  return lines


def _lpips_note(report) -> str:
  for e in report['settings']:
    m = e['metrics'].get('reconstruction/mean_image/lpips')
    if m is not None:
      return m.get('note') or 'on every image'
  return 'not measured'


def _load(run_dirs: list[str], name: str) -> dict:
  """{run: the newest checkpoint step's report of the evaluation `name`}."""
  runs = {}
  for d in run_dirs:
    found = tables.newest_step_dir(os.path.join(d, 'eval', name))
    if found is None:
      raise SystemExit(f'{d}: no report of the evaluation {name!r} (eval/{name}/step_*/)')
    runs[os.path.basename(os.path.normpath(d))] = tables.load_report(found)
  return runs


def accounts_markdown(run_dirs: list[str], name: str, out: str, runs: dict | None = None) -> str:
  """The tables of an evaluation of accounts and repeated uploads alone (configs/eval/<name>.py):
  accounts for every attacker family pooled, repeated uploads, the cloud head, seeds and time.
  `runs`: the reports, where `_load` has read them already."""
  runs = runs or _load(run_dirs, name)
  for run, report in runs.items():
    if 'accounts' not in report['eval_config'].get('evaluators', ()):
      raise SystemExit(
          f'{run}: the evaluation {name!r} ran no attack on accounts; name one that did'
      )
  commands = [f'python eval.py --workdir {d} --config configs/eval/{name}.py' for d in run_dirs] + [
      f'python -m benchmarks.lfw_attack_table {" ".join(run_dirs)} --name {name} --out {out}'
  ]
  first = next(iter(runs.values()))
  lines = ['```bash', *commands, '```', '']
  for family in first['eval_config']['accounts']['families']:
    lines += [f'### Accounts: k uploads of one person pooled ({family} on the uploads)', '']
    lines += k_table(runs, f'accounts/{family}/k', f'{family} top-1 (%)')
    lines.append('')
  lines += ['### Repeated uploads: the mean of k uploads of one photo (linear)', '']
  lines += k_table(runs, 'repeated_upload/k', 'top-1 (%)')
  lines += utility_section(runs)
  lines += ['', '### Seeds and time', '']
  lines += timing_lines(runs)
  return '\n'.join(lines) + '\n'


def _ran(runs: dict, evaluator: str) -> bool:
  return any(evaluator in r['eval_config'].get('evaluators', ()) for r in runs.values())


def markdown(
    run_dirs: list[str], name: str = NAME, out: str = OUT, runs: dict | None = None
) -> str:
  """The tables of an evaluation with reconstructions (configs/eval/lfw_attacks.py, or
  lfw_decoder.py): reconstructions and their re-identification, the cloud head, and accounts and
  repeated uploads where it ran them. `runs`: the reports, where `_load` has read them already."""
  runs = runs or _load(run_dirs, name)
  flag = '' if name == NAME else f' --name {name}'
  commands = [f'python eval.py --workdir {d} --config configs/eval/{name}.py' for d in run_dirs] + [
      f'python benchmarks/lfw_attack_table.py {" ".join(run_dirs)}{flag} --out {out}'
  ]
  first = next(iter(runs.values()))
  reid = first['eval_config']['reidentify']
  text = [
      '```bash',
      *commands,
      '```',
      '',
      '### Reconstructions and their re-identification',
      '',
      'Attacker-test photos; PSNR, SSIM and LPIPS (VGG, lower is closer; '
      f'{_lpips_note(first)}) are means ± standard errors over the images. Re-id: the '
      "identity top-1 of a linear classifier on the attacker's raw photos, and of dlib's face "
      f'recogniser (on {reid["face_probes"] or "all"} attacker-test rows drawn with the eval seed, '
      f'against {reid["face_gallery"] or "all"} gallery photos a person); the originals row is '
      'the same identifiers on the photos themselves (the ceiling). Each decoder is trained on the '
      "uploads of that setting of the attacker's own photos.",
      '',
  ]
  text += reconstruction_table(runs)
  text += utility_section(runs)
  if _ran(runs, 'accounts'):
    text += ['', '### Accounts: k uploads of one person pooled (linear on the uploads)', '']
    text += k_table(runs, 'accounts/linear/k', 'top-1 (%)')
  if _ran(runs, 'repeated_upload'):
    text += ['', '### Repeated uploads: the mean of k uploads of one photo (linear)', '']
    text += k_table(runs, 'repeated_upload/k', 'top-1 (%)')
  text += ['', '### Seeds and time', '']
  text += timing_lines(runs)
  return '\n'.join(text) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('runs', nargs='+')
  parser.add_argument('--out', default='')
  parser.add_argument(
      '--name',
      default=NAME,
      help=f'the evaluation to read: {NAME} (the default), lfw_decoder, lfw_accounts...',
  )
  args = parser.parse_args()
  out = args.out or f'benchmarks/results/{args.name}.md'
  runs = _load(args.runs, args.name)
  render = markdown if _ran(runs, 'reconstruction') else accounts_markdown
  text = render(args.runs, args.name, out, runs)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
