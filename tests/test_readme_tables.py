"""The README's generated tables equal the committed result files they are rendered from."""

import importlib.util
import os

import pytest

pytestmark = pytest.mark.meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    'readme_tables', os.path.join(ROOT, 'tools', 'readme_tables.py')
)
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)


def test_readme_tables_match_their_result_files():
  readme = open(os.path.join(ROOT, 'README.md')).read()
  assert '<!-- table: ' in readme  # the README does use generated tables
  assert readme_tables.stale_tables(readme) == [], 'run: python tools/readme_tables.py'


def test_an_edited_number_is_caught(tmp_path):
  (tmp_path / 'r.md').write_text('| a | b |\n|---|---|\n| 1.0 | 2.0 |\n')
  good = '# x\n<!-- table: r.md -->\n| a | b |\n|---|---|\n| 1.0 | 2.0 |\n<!-- end table -->\n'
  assert readme_tables.stale_tables(good, str(tmp_path)) == []
  assert readme_tables.stale_tables(good.replace('2.0', '2.1'), str(tmp_path)) == ['r.md']
  assert readme_tables.render(good.replace('2.0', '2.1'), str(tmp_path)) == good
  with pytest.raises(FileNotFoundError, match='missing.md'):
    readme_tables.render('<!-- table: missing.md -->\n<!-- end table -->', str(tmp_path))


_spec = importlib.util.spec_from_file_location(
    'fault_table', os.path.join(ROOT, 'tools', 'fault_table.py')
)
fault_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fault_table)


def test_fault_table_lists_the_cases_the_tests_run():
  """benchmarks/results/fault_cases.md (the README's fault table) equals what the tests hold."""
  with open(os.path.join(ROOT, fault_table.OUT)) as f:
    assert f.read() == fault_table.render(), 'run: python tools/fault_table.py'
  tables = fault_table.collect()
  categories = [category for category, _, _ in tables]
  for category in (
      'kill -9 while preparing data',
      'kill -9 while caching features',
      'full disk',
      'workdir lock',
  ):
    assert category in categories
  assert all(about and '\n' not in about for _, _, cases in tables for _, about in cases)
