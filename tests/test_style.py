"""One style for the whole tree: pyink (2-space Google style, 100 columns) and ruff, as configured in
pyproject.toml. Fix a failure with `pyink . && ruff check --fix .`."""

import os
import subprocess
import sys

import pytest

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
