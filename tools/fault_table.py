r"""The bad-input and fault suite as a table, collected from the tests themselves.

  python tools/fault_table.py          # write benchmarks/results/fault_cases.md
  python tools/fault_table.py --check  # exit 1 when that file differs from the tests

Sources (imported, so the table lists exactly what pytest runs):

* every `faultlib.Cases` table of the modules in `CASE_MODULES` (tests/test_faults.py): its
  category, what each case asserts and a one-line description per case;
* the single (not parametrized) tests of those modules, described by their docstring's first
  sentence or their name;
* the parametrized one-line-error tests of other modules named in `OTHER_TESTS` (bad CSVs, image
  folders and data files): one case per parameter set, described by the message it expects.

docs/faults.md shows the file between `<!-- table: benchmarks/results/fault_cases.md -->` markers
(tools/readme_tables.py); tests/test_readme_tables.py checks that the file is current.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join('benchmarks', 'results', 'fault_cases.md')
CASE_MODULES = ('test_faults',)
# (module, test function, category, what each case asserts)
OTHER_TESTS = (
    (
        'test_image_folder',
        'test_bad_csv_is_a_one_line_error',
        'bad CSV (image_folder)',
        'a one-line DataError that names the CSV and what is wrong; nothing prepared',
    ),
    (
        'test_lfw',
        'test_malformed_attributes_file_is_a_one_line_error',
        'bad data file (LFW attributes)',
        'a one-line error that names the file and the line; nothing prepared',
    ),
    (
        'test_lfw',
        'test_malformed_name_list_is_a_one_line_error',
        'bad data file (LFW name lists)',
        'a one-line error that names the file and the line; nothing prepared',
    ),
    (
        'test_celeba',
        'test_missing_file_names_the_file_and_where_to_get_it',
        'missing data file (CelebA)',
        'a one-line error that names the missing file and where to get it',
    ),
)


def _import(name):
  tests = os.path.join(ROOT, 'tests')
  for path in (ROOT, tests):
    if path not in sys.path:
      sys.path.insert(0, path)
  return importlib.import_module(name)


def _cell(text: str) -> str:
  return ' '.join(str(text).split()).replace('|', '\\|')


def _first_sentence(fn) -> str:
  doc = inspect.getdoc(fn)
  if not doc:
    return fn.__name__.removeprefix('test_').replace('_', ' ')
  text = ' '.join(doc.split('\n\n')[0].split())
  return text.split('. ')[0].rstrip('.')


def _parametrize(fn):
  for mark in getattr(fn, 'pytestmark', []):
    if mark.name == 'parametrize':
      return mark
  return None


def collect() -> list[tuple[str, str, list[tuple[str, str]]]]:
  """[(category, what each case asserts, [(case, description), ...]), ...]"""
  Cases = _import('faultlib').Cases  # noqa: N806 -- a class

  tables = []
  for module_name in CASE_MODULES:
    module = _import(module_name)
    singles = []
    for name, value in vars(module).items():
      if isinstance(value, Cases):
        tables.append((value.category, value.asserts, list(value.about.items())))
      elif name.startswith('test_') and callable(value) and _parametrize(value) is None:
        singles.append((name.removeprefix('test_'), _first_sentence(value)))
    if singles:
      tables.append(
          (
              f'single cases ({module_name}.py)',
              'each as its description says (one test each)',
              singles,
          )
      )
  for module_name, test, category, asserts in OTHER_TESTS:
    fn = getattr(_import(module_name), test)
    mark = _parametrize(fn)
    cases = []
    for i, values in enumerate(mark.args[1]):
      values = values if isinstance(values, (tuple, list)) else (values,)
      # A dict-driven test is parametrized over the dict's keys; a list of tuples ends with the
      # message it expects.
      names = [n.strip() for n in mark.args[0].split(',')] if isinstance(mark.args[0], str) else []
      if len(values) == 1 and names:  # over a dict's keys, or a list of names: the name says it
        case, about = f'{test.removeprefix("test_")}[{values[0]}]', f'{names[0]}: {values[0]}'
      else:
        case, about = f'{test.removeprefix("test_")}[{i}]', str(values[-1])
      cases.append((case, about))
    tables.append((category, asserts, cases))
  return tables


def render() -> str:
  tables = collect()
  total = sum(len(cases) for _, _, cases in tables)
  lines = [
      f'{total} cases in {len(tables)} categories (`python tools/fault_table.py`, from the tests'
      ' that run them).',
      '',
      '| category | cases | what each case asserts |',
      '|---|---:|---|',
  ]
  lines += [f'| {_cell(c)} | {len(cases)} | {_cell(a)} |' for c, a, cases in tables]
  lines += ['', '| category | case | what it does |', '|---|---|---|']
  for category, _, cases in tables:
    lines += [f'| {_cell(category)} | `{name}` | {_cell(about)} |' for name, about in cases]
  return '\n'.join(lines) + '\n'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--check', action='store_true')
  args = parser.parse_args()
  text = render()
  path = os.path.join(ROOT, OUT)
  if args.check:
    if not os.path.exists(path) or open(path).read() != text:
      print(f'{OUT} differs from the tests: run python tools/fault_table.py', file=sys.stderr)
      sys.exit(1)
    return
  with open(path, 'w') as f:
    f.write(text)
  print(f'written to {OUT}')


if __name__ == '__main__':
  main()
