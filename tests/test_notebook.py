"""The tour notebook executes top to bottom on the tiny configuration, and is stored stripped."""

import os

import nbformat
import pytest

ROOT = os.path.join(os.path.dirname(__file__), '..')
PATH = os.path.join(ROOT, 'notebooks', 'privjax_tour.ipynb')


def test_notebook_is_stored_without_outputs():
  nb = nbformat.read(PATH, as_version=4)
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert cell.outputs == [] and cell.execution_count is None


def test_notebook_runs_on_the_tiny_config(tfds_dir, tmp_path, monkeypatch):
  nbclient = pytest.importorskip('nbclient')
  monkeypatch.setenv('PRIVJAX_NOTEBOOK_TINY', '1')
  monkeypatch.setenv('PRIVJAX_NOTEBOOK_WORKDIR', str(tmp_path / 'runs'))
  monkeypatch.setenv('PRIVJAX_NOTEBOOK_DATA_DIR', tfds_dir)
  nb = nbformat.read(PATH, as_version=4)
  nbclient.NotebookClient(
      nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}
  ).execute()
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) >= 4, [o.output_type for o in outputs]  # curves, projection, 2 grids
  assert os.path.exists(tmp_path / 'runs' / 'siamese' / 'eval' / 'default' / 'report.json')
