r"""Tables of README.md and docs/*.md rendered from committed result files, so they cannot drift apart.

  python tools/readme_tables.py          # rewrite the generated tables in place
  python tools/readme_tables.py --check  # exit 1 (naming the tables) when they differ

A generated table sits between two markers in README.md or a page of docs/:

  <!-- table: benchmarks/results/frontier_lfw_quick.md -->
  ...the file's content, verbatim...
  <!-- end table -->

The result files are small markdown files under `benchmarks/results/` that the commands written
next to each table produce (run directories stay uncommitted). `tests/test_readme_tables.py` runs
the check.
"""

from __future__ import annotations

import argparse
import glob
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
      raise FileNotFoundError(f'table source {m.group("path")} does not exist')
    body = open(path).read()
    return m.group(1) + body.rstrip('\n') + '\n' + m.group(4)

  return _BLOCK.sub(fill, readme)


def pages(root: str = ROOT) -> list[str]:
  """README.md and every page of docs/, the files that may hold generated tables."""
  return [os.path.join(root, 'README.md')] + sorted(glob.glob(os.path.join(root, 'docs', '*.md')))


def stale_tables(readme: str, root: str = ROOT) -> list[str]:
  rendered = render(readme, root)
  ours = {m.group('path'): m.group('body') for m in _BLOCK.finditer(readme)}
  theirs = {m.group('path'): m.group('body') for m in _BLOCK.finditer(rendered)}
  return sorted(p for p in ours if ours[p] != theirs[p])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--check', action='store_true')
  args = parser.parse_args()
  stale = []
  for page in pages():
    with open(page) as f:
      text = f.read()
    if args.check:
      stale += [f'{os.path.relpath(page, ROOT)}: {p}' for p in stale_tables(text)]
    else:
      with open(page, 'w') as f:
        f.write(render(text))
  if stale:
    print(f'tables differ from their files: {", ".join(stale)}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  main()
