"""The README's generated tables equal the committed result files they are rendered from."""

import importlib.util
import os

import pytest

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
