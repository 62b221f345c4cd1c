"""The tour notebook: stored stripped, Colab-ready (badge, install cell, config by backend), and
executed top to bottom on the tiny configuration."""

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import types

import jax
import nbformat
import pytest

pytestmark = pytest.mark.meta

ROOT = os.path.join(os.path.dirname(__file__), '..')
PATH = os.path.join(ROOT, 'notebooks', 'privjax_tour.ipynb')
NB = nbformat.read(PATH, as_version=4)
CODE = [c for c in NB.cells if c.cell_type == 'code']
INSTALL, PARAMETERS = CODE[0].source, CODE[1].source
REPO = 'https://github.com/someone/privjax'
# The functions that the install cell calls, as they are before any test replaces them.
REAL = types.SimpleNamespace(
    find_spec=importlib.util.find_spec,
    version=importlib.metadata.version,
    distributions=importlib.metadata.distributions,
)


def test_notebook_is_stored_without_outputs():
  for cell in CODE:
    assert cell.outputs == [] and cell.execution_count is None


def test_first_cell_has_the_colab_badge_with_a_marked_placeholder():
  first = NB.cells[0]
  assert first.cell_type == 'markdown'
  badge = 'https://colab.research.google.com/assets/colab-badge.svg'
  (link,) = re.findall(rf'\[!\[Open In Colab\]\({badge}\)\]\(([^)]+)\)', first.source)
  assert link == (
      'https://colab.research.google.com/github/OWNER/privjax/blob/main/notebooks/'
      'privjax_tour.ipynb'
  )
  assert 'placeholder' in first.source and '`REPO_URL`' in first.source


def _run_install_cell(monkeypatch, *, repo_url, builds=(), versions=None):
  """Runs the install cell as if privjax were not installed: the pip commands it would run, with
  the constraints file's lines, and the names of the distributions that it sees installed."""
  versions = {'numpy': '2.0.2', 'jax': '0.10.9', 'jaxlib': '0.10.9', **(versions or {})}
  commands = []

  def fake_run(command, check):
    assert check and command[1:4] == ['-m', 'pip', 'install']
    args = command[4:]
    constraints = []
    if '-c' in args:
      with open(args[args.index('-c') + 1]) as f:
        constraints = f.read().split()
    commands.append((args, constraints))

  def version(dist):
    if dist in versions:
      return versions[dist]
    if dist in builds:
      return '0.10.9'
    return REAL.version(dist)

  def distributions():
    yield from REAL.distributions()
    for name in builds:
      yield types.SimpleNamespace(metadata={'Name': name})

  monkeypatch.setattr(subprocess, 'run', fake_run)
  monkeypatch.setattr(
      importlib.util, 'find_spec', lambda n, *a: None if n == 'privjax' else REAL.find_spec(n, *a)
  )
  monkeypatch.setattr(importlib.metadata, 'version', version)
  monkeypatch.setattr(importlib.metadata, 'distributions', distributions)
  source = INSTALL.replace('"https://github.com/OWNER/privjax"', repr(repo_url), 1)
  assert source != INSTALL
  exec(compile(source, 'install_cell', 'exec'), {})
  return commands


def _requirement_names(args):
  """The distribution names among pip's arguments (options and the constraints file left out)."""
  args = [a for a, before in zip(args, [None, *args]) if not a.startswith('-') and before != '-c']
  return {re.match(r'[A-Za-z0-9._-]+', a).group().lower() for a in args}


def test_install_cell_on_a_gpu_runtime_keeps_its_jax(monkeypatch):
  builds = ('jax-cuda12-plugin', 'jax-cuda12-pjrt')
  commands = _run_install_cell(monkeypatch, repo_url=REPO, builds=builds)
  (package, _), (deps, constraints) = commands
  assert package == ['-q', '--no-deps', f'git+{REPO}']
  assert sorted(constraints) == [
      'jax-cuda12-pjrt==0.10.9',
      'jax-cuda12-plugin==0.10.9',
      'jax==0.10.9',
      'jaxlib==0.10.9',
      'numpy==2.0.2',
  ]
  declared = [r for r in importlib.metadata.requires('privjax') if 'extra ==' not in r]
  names = _requirement_names(deps)
  assert 'jax' not in names and 'jaxlib' not in names  # held by the constraints instead
  assert names == _requirement_names(declared) - {'jax'}
  # A TPU runtime: libtpu makes jax an accelerator build too.
  commands = _run_install_cell(monkeypatch, repo_url=f'git+{REPO}@v1', builds=('libtpu',))
  assert commands[0][0] == ['-q', '--no-deps', f'git+{REPO}@v1']
  assert 'libtpu==0.10.9' in commands[1][1] and 'jax==0.10.9' in commands[1][1]


def test_install_cell_on_a_cpu_runtime_installs_the_declared_jax(monkeypatch):
  (_, _), (deps, constraints) = _run_install_cell(monkeypatch, repo_url=REPO)
  assert constraints == ['numpy==2.0.2']  # numpy is the runtime's, jax is privjax's range
  assert 'jax' in _requirement_names(deps)
  assert not any(a.startswith('-r') or 'requirements' in a for a in deps)


def test_install_cell_without_a_repository_url_says_what_to_set(monkeypatch):
  with pytest.raises(ValueError, match=r'^privjax is not installed: set REPO_URL \(the form field'):
    _run_install_cell(monkeypatch, repo_url='https://github.com/OWNER/privjax')


def test_install_cell_does_nothing_where_privjax_is_importable(monkeypatch):
  monkeypatch.setattr(subprocess, 'run', lambda *a, **k: pytest.fail('ran pip'))
  exec(compile(INSTALL, 'install_cell', 'exec'), {})


@pytest.mark.parametrize(
    'backend, form, env, expected',
    [
        ('cpu', 'auto', None, 'tiny'),
        ('gpu', 'auto', None, 'demo'),
        ('tpu', 'auto', None, 'demo'),
        ('cpu', 'demo', None, 'demo'),
        ('gpu', 'tiny', None, 'tiny'),
        ('gpu', 'auto', '1', 'tiny'),  # CI's switch
    ],
)
def test_parameters_cell_picks_the_config_by_backend(monkeypatch, backend, form, env, expected):
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  for name in ('PRIVJAX_NOTEBOOK_TINY', 'PRIVJAX_NOTEBOOK_WORKDIR', 'PRIVJAX_NOTEBOOK_DATA_DIR'):
    monkeypatch.delenv(name, raising=False)
  if env:
    monkeypatch.setenv('PRIVJAX_NOTEBOOK_TINY', env)
  source = PARAMETERS.replace('CONFIG = "auto"', f'CONFIG = {form!r}', 1)
  assert source != PARAMETERS or form == 'auto'
  namespace = {}
  exec(compile(source, 'parameters_cell', 'exec'), namespace)
  assert (namespace['CONFIG'], namespace['TINY']) == (expected, expected == 'tiny')
  assert namespace['WORKDIR'] == f'runs/notebook_{expected}'


def test_notebook_runs_on_the_tiny_config(tfds_dir, tmp_path, monkeypatch):
  nbclient = pytest.importorskip('nbclient')
  monkeypatch.setenv('PRIVJAX_NOTEBOOK_TINY', '1')
  monkeypatch.setenv('PRIVJAX_NOTEBOOK_WORKDIR', str(tmp_path / 'runs'))
  monkeypatch.setenv('PRIVJAX_NOTEBOOK_DATA_DIR', tfds_dir)
  nb = nbformat.read(PATH, as_version=4)
  nbclient.NotebookClient(
      nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}
  ).execute()
  code = [c for c in nb.cells if c.cell_type == 'code']
  outputs = [o for c in code for o in c.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  printed = ['\n'.join(o.text for o in c.outputs if o.output_type == 'stream') for c in code]
  assert printed[0].startswith('privjax ') and '$ pip' not in printed[0]  # nothing installed
  assert 'config tiny' in printed[1]
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) >= 4, [o.output_type for o in outputs]  # curves, projection, 2 grids
  assert list((tmp_path / 'runs' / 'siamese' / 'eval' / 'default').glob('step_*/report.json'))
