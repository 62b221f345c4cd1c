"""Where an evaluation's time goes: each evaluator's wall and CPU seconds from a report.json.

python -m benchmarks.eval_profile runs/demo/none/eval/default/step_500 --out FILE.md
"""

from __future__ import annotations

import argparse

from privjax.report import tables


def markdown(report: dict, name: str) -> str:
  rows = sorted(report['evaluators'].items(), key=lambda kv: -kv[1].get('cpu_seconds', 0.0))
  lines = [
      f'Evaluation of `{name}` ({report["defence"]["name"]}, step {report["step"]}): '
      f'{report["seconds"]:.0f} s wall in all.',
      '',
      '| evaluator | wall (s) | CPU (s) |',
      '|---|---:|---:|',
  ]
  lines += [
      f'| {k} | {v["seconds"]:.0f} | {v["cpu_seconds"]:.0f}{"*" if v.get("cpu_shared") else ""} |'
      for k, v in rows
  ]
  total = sum(v['cpu_seconds'] for _, v in rows)
  shared = any(v.get('cpu_shared') for _, v in rows)
  lines.append(
      f'| all evaluators | {sum(v["seconds"] for _, v in rows):.0f} | {total:.0f}'
      f'{"*" if shared else ""} |'
  )
  if shared:
    lines += [
        '',
        '\\* Another evaluation, or a training, ran in the same process meanwhile (side by side): '
        'the CPU seconds include its work.',
    ]
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('report', help='a report.json or the folder holding it')
  parser.add_argument('--out', help='write the table here (default: print it)')
  args = parser.parse_args()
  text = markdown(tables.load_report(args.report), args.report)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  print(text, end='')


if __name__ == '__main__':
  main()
