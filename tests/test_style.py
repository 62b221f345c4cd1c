"""One style for the whole tree: pyink (2-space Google style, 100 columns) and ruff, as configured in
pyproject.toml. Fix a failure with `pyink . && ruff check --fix .`."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=ROOT):
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd, capture_output=True, text=True)


def test_tree_is_formatted_with_pyink():
  result = _run('pyink', '--check', '.')
  assert result.returncode == 0, result.stderr[-3000:]


def test_tree_passes_ruff():
  result = _run('ruff', 'check', '--no-cache', '.')
  assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    'source, tool',
    [
        ('def f(x):\n    return {"a":x}\n', 'pyink'),  # 4-space indent, no spaces
        ('import os\n\n\ndef f():\n  return 1\n', 'ruff'),  # unused import
    ],
)
def test_checks_fail_on_a_misformatted_file(tmp_path, source, tool):
  # The same configuration, applied to a file that breaks it: the check must fail.
  (tmp_path / 'pyproject.toml').write_text(open(os.path.join(ROOT, 'pyproject.toml')).read())
  (tmp_path / 'bad.py').write_text(source)
  args = (
      ('pyink', '--check', 'bad.py')
      if tool == 'pyink'
      else ('ruff', 'check', '--no-cache', 'bad.py')
  )
  assert _run(*args, cwd=tmp_path).returncode != 0


def test_every_test_file_says_which_kind_its_tests_are():
  """Each tests/test_*.py marks its tests with exactly one kind registered in pyproject.toml, so
  `-m unit` / `-m e2e` / `-m meta` split the whole suite."""
  import ast
  import glob
  import tomllib

  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    registered = [
        m.split(':')[0] for m in tomllib.load(f)['tool']['pytest']['ini_options']['markers']
    ]
  assert registered == ['unit', 'e2e', 'meta']
  wrong = {}
  for path in sorted(glob.glob(os.path.join(ROOT, 'tests', 'test_*.py'))):
    tree = ast.parse(open(path).read())
    (mark,) = [
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == 'pytestmark'
    ] or [None]
    marks = mark.elts if isinstance(mark, ast.List) else [mark] if mark is not None else []
    kinds = [ast.unparse(m).removeprefix('pytest.mark.') for m in marks]
    kinds = [k for k in kinds if k in registered]
    if len(kinds) != 1:
      wrong[os.path.basename(path)] = kinds
  assert not wrong, f'test files without exactly one of {registered}: {wrong}'
