r"""README tables rendered from committed result files, so the two cannot drift apart.

  python tools/readme_tables.py          # rewrite the README's generated tables in place
  python tools/readme_tables.py --check  # exit 1 (naming the tables) when they differ

A generated table sits between two markers in README.md:

  <!-- table: benchmarks/results/frontier_lfw_quick.md -->
  ...the file's content, verbatim...
  <!-- end table -->

The result files are small markdown files under `benchmarks/results/` that the commands written
next to each table produce (run directories stay uncommitted). `tests/test_readme_tables.py` runs
the check.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BLOCK = re.compile(r'(<!-- table: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end table -->)', re.S)


def render(readme: str, root: str = ROOT) -> str:
  """`readme` with every generated table replaced by its file's current content."""

  def fill(m):
    path = os.path.join(root, m.group('path'))
    if not os.path.exists(path):
      raise FileNotFoundError(f'README table source {m.group("path")} does not exist')
    body = open(path).read()
    return m.group(1) + body.rstrip('\n') + '\n' + m.group(4)

  return _BLOCK.sub(fill, readme)


def stale_tables(readme: str, root: str = ROOT) -> list[str]:
  rendered = render(readme, root)
  ours = {m.group('path'): m.group('body') for m in _BLOCK.finditer(readme)}
  theirs = {m.group('path'): m.group('body') for m in _BLOCK.finditer(rendered)}
  return sorted(p for p in ours if ours[p] != theirs[p])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--check', action='store_true')
  parser.add_argument('--readme', default=os.path.join(ROOT, 'README.md'))
  args = parser.parse_args()
  text = open(args.readme).read()
  if args.check:
    stale = stale_tables(text)
    if stale:
      print(f'README tables differ from their files: {", ".join(stale)}', file=sys.stderr)
      sys.exit(1)
    return
  with open(args.readme, 'w') as f:
    f.write(render(text))


if __name__ == '__main__':
  main()
