"""README.md and docs/*.md: their generated tables equal the committed result files they are
rendered from, README's results at a glance equal what tools/results_at_a_glance.py reads from those
files, and every relative link resolves."""

import importlib.util
import os
import re

import pytest

pytestmark = pytest.mark.meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'tools', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


readme_tables = _tool('readme_tables')
glance = _tool('results_at_a_glance')
PAGES = readme_tables.pages()


def test_the_pages_are_readme_and_docs():
  names = [os.path.relpath(p, ROOT) for p in PAGES]
  assert names[0] == 'README.md'
  assert {'docs/faults.md', 'docs/speed.md', 'docs/results_main_job.md'} <= set(names)


@pytest.mark.parametrize('page', PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_generated_tables_match_their_result_files(page):
  text = open(page).read()
  assert readme_tables.stale_tables(text) == [], 'run: python tools/readme_tables.py'


def test_docs_use_generated_tables():
  assert any('<!-- table: ' in open(p).read() for p in PAGES)


def test_an_edited_number_is_caught(tmp_path):
  (tmp_path / 'r.md').write_text('| a | b |\n|---|---|\n| 1.0 | 2.0 |\n')
  good = '# x\n<!-- table: r.md -->\n| a | b |\n|---|---|\n| 1.0 | 2.0 |\n<!-- end table -->\n'
  assert readme_tables.stale_tables(good, str(tmp_path)) == []
  assert readme_tables.stale_tables(good.replace('2.0', '2.1'), str(tmp_path)) == ['r.md']
  assert readme_tables.render(good.replace('2.0', '2.1'), str(tmp_path)) == good
  with pytest.raises(FileNotFoundError, match='missing.md'):
    readme_tables.render('<!-- table: missing.md -->\n<!-- end table -->', str(tmp_path))


fault_table = _tool('fault_table')


def test_fault_table_lists_the_cases_the_tests_run():
  """benchmarks/results/fault_cases.md (docs/faults.md's table) equals what the tests hold."""
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


def test_results_at_a_glance_match_their_result_files():
  readme = open(os.path.join(ROOT, 'README.md')).read()
  assert glance.MARK_BEGIN in readme
  assert glance.render(readme) == readme, 'run: python tools/results_at_a_glance.py'


def test_every_glance_row_reads_a_value_and_names_its_command():
  table = glance.table()
  rows = table.strip().split('\n')[2:]
  assert len(rows) == len(glance.ROWS)
  for row, line in zip(glance.ROWS, rows):
    cells = [c.strip() for c in line.strip('|').split(' | ')]
    assert cells[1], row.result
    assert cells[2] == f'`{row.command}`'
    assert os.path.exists(os.path.join(ROOT, row.file)) and os.path.exists(
        os.path.join(ROOT, row.page)
    )


def test_glance_reads_cells_rows_and_matches(tmp_path):
  (tmp_path / 'r.md').write_text(
      'Wall time: 12 s.\n\n| run | a | b |\n|---|---|---|\n| x | 1 | **2.5** ± 0.1 |\n| y | 3 | 4 |\n'
  )
  r = glance.Result(str(tmp_path / 'r.md'))
  assert r.cell('x', 'b') == '2.5 ± 0.1'
  assert r.cell('y | 3', 'b') == '4'
  assert r.row('y') == 'a 3; b 4'
  assert r.column('x', 'a') == ['1', '3']
  assert r.match(r'^Wall time: (\d+ s)') == '12 s'
  with pytest.raises(KeyError, match='no table row'):
    r.cell('z', 'a')
  with pytest.raises(KeyError, match="no column 'c'"):
    r.cell('x', 'c')
  # A row label in two tables: the cell comes from the table that has the column.
  (tmp_path / 's.md').write_text(
      '| run | a |\n|---|---|\n| x | 1 |\n\ntext\n\n| run | k |\n|---|---|\n| x | 9 |\n'
  )
  s = glance.Result(str(tmp_path / 's.md'))
  assert s.cell('x', 'a') == '1' and s.cell('x', 'k') == '9'


def test_an_edited_glance_value_is_caught(tmp_path):
  readme = open(os.path.join(ROOT, 'README.md')).read()
  value = glance.ROWS[0].value(glance.Result(os.path.join(ROOT, glance.ROWS[0].file)))
  edited = readme.replace(value, value.replace('.', ',', 1), 1)
  assert edited != readme
  assert glance.render(edited) == readme


_LINK = re.compile(r'\]\(([^)\s]+)\)')


def _anchors(path):
  """GitHub's anchors of a markdown file's headings: lower case, punctuation dropped, '-' for ' '."""
  headings = re.findall(r'^#+ (.+)$', open(path).read(), re.M)
  return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in headings}


@pytest.mark.parametrize('page', PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(page):
  """Every link to a file of the repository names one that exists, and a heading of it if any."""
  missing = []
  for target in _LINK.findall(open(page).read()):
    if re.match(r'[a-z]+:', target):
      continue
    path, _, anchor = target.partition('#')
    path = os.path.join(os.path.dirname(page), path) if path else page
    if not os.path.exists(path) or (anchor and anchor not in _anchors(path)):
      missing.append(target)
  assert missing == []


def test_anchors_are_github_s():
  assert _anchors(os.path.join(ROOT, 'docs', 'evaluation.md')) >= {
      'evaluation',
      'evaluation-that-streams',
      'evaluators-their-settings-and-the-report',
  }
