"""The installable package: declared dependencies are what privjax imports, the wheel holds the
package, its configs (as privjax.configs) and the console scripts, and configs are found outside a
clone. (The full check, pip-installing the wheel into a fresh environment and training from the
console script, is by hand: see docs/installing.md.)"""

import ast
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from absl import flags
from packaging.requirements import Requirement

from privjax import config_args

pytestmark = pytest.mark.meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = tomllib.load(open(os.path.join(ROOT, 'pyproject.toml'), 'rb'))
PROJECT = PYPROJECT['project']
# Declared but never imported: what privjax needs at run time through another package.
RUNTIME_ONLY = {
    'flatbuffers': 'jax.export serialises with it, and jax does not declare it',
    'array-record': 'TFDS writes and grain reads the array_record files',
}
# Imported only when a feature asks for it, and declared in that extra.
OPTIONAL_IMPORTS = {
    'h5py': 'keras',
    'tensorflow': 'tflite',
    'dlib-bin': 'face',
    'dp-accounting': 'dp',
    'pandas': 'notebook',
}
# Imported modules whose distribution's metadata does not name them: dlib-bin's top_level.txt
# lists only its extension module, _dlib_pybind11.
MODULE_DISTRIBUTIONS = {'dlib': 'dlib-bin'}
# Extras that a clone installs too (requirements.txt pins them, at the versions verified here).
PINNED_EXTRAS = ('face', 'imagenet', 'dp', 'notebook', 'tensorboard')
# `privjax <command>` and the `privjax-<command>` scripts.
COMMANDS = ('train', 'eval', 'reproduce', 'sweep', 'frontier', 'cost', 'export')
SCRIPTS = ('privjax', *(f'privjax-{c}' for c in COMMANDS))


def _canonical(name: str) -> str:
  return re.sub(r'[-_.]+', '-', name).lower()


def _requirement_name(requirement: str) -> str:
  return _canonical(re.match(r'[A-Za-z0-9._-]+', requirement).group())


def _imports(folder: str) -> dict[str, set[str]]:
  """Top-level names of the absolute imports of every .py file under `folder` → their files."""
  found = {}
  for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
    for name in files:
      if not name.endswith('.py'):
        continue
      path = os.path.join(dirpath, name)
      for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
          modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
          modules = [node.module]
        else:
          continue
        for module in modules:
          found.setdefault(module.split('.')[0], set()).add(os.path.relpath(path, ROOT))
  return found


def _imported_distributions() -> dict[str, set[str]]:
  """Distributions of the third-party imports of the installed package (privjax/ and configs/)."""
  names = importlib.metadata.packages_distributions()
  imports = _imports('privjax')
  for module, files in _imports('configs').items():
    imports.setdefault(module, set()).update(files)
  found = {}
  for module, files in imports.items():
    if module in sys.stdlib_module_names or module == 'privjax':
      continue
    # not in the metadata (not installed, an extra): named as imported
    for dist in names.get(module, [MODULE_DISTRIBUTIONS.get(module, module)]):
      found.setdefault(_canonical(dist), set()).update(files)
  return found


def test_every_third_party_import_is_declared():
  declared = {_requirement_name(r) for r in PROJECT['dependencies']}
  extras = {
      extra: {_requirement_name(r) for r in reqs}
      for extra, reqs in PROJECT['optional-dependencies'].items()
  }
  missing = {}
  for dist, files in _imported_distributions().items():
    extra = OPTIONAL_IMPORTS.get(dist)
    if dist not in declared and (extra is None or dist not in extras[extra]):
      missing[dist] = sorted(files)
  assert not missing, f'imported but not declared in pyproject.toml: {missing}'
  for dist, extra in OPTIONAL_IMPORTS.items():
    assert dist not in declared, f'{dist} is optional: declare it in the [{extra}] extra only'


def test_every_declared_dependency_is_imported_or_needed_at_run_time():
  imported = set(_imported_distributions())
  unused = sorted(
      d
      for d in (_requirement_name(r) for r in PROJECT['dependencies'])
      if d not in imported and d not in RUNTIME_ONLY
  )
  assert not unused, f'declared in pyproject.toml but never imported: {unused}'


def pins_for_this_python(path: str) -> dict[str, str]:
  """{distribution: pinned version} of a requirements file's `==` lines whose environment marker
  (`; python_version < "3.12"`) holds for this interpreter."""
  pins = {}
  for line in open(path):
    line = line.split('#')[0].strip()
    if '==' not in line:
      continue
    requirement = Requirement(line)
    if requirement.marker is None or requirement.marker.evaluate():
      (spec,) = requirement.specifier
      assert _canonical(requirement.name) not in pins, f'{requirement.name} pinned twice'
      pins[_canonical(requirement.name)] = spec.version
  return pins


def test_pinned_requirements_cover_the_declared_dependencies():
  """requirements.txt pins every dependency, and the extras a clone installs, at the version
  installed here (the verified set for this Python: jax 0.11 and newer need Python 3.12, so a few
  pins depend on the version)."""
  pins = pins_for_this_python(os.path.join(ROOT, 'requirements.txt'))
  extras = [r for extra in PINNED_EXTRAS for r in PROJECT['optional-dependencies'][extra]]
  for requirement in PROJECT['dependencies'] + extras:
    name = _requirement_name(requirement)
    assert name in pins, f'{name} is declared but not pinned in requirements.txt'
    assert importlib.metadata.version(name) == pins[name], f'{name}: installed != pinned'


def test_listed_packages_are_the_tree():
  setuptools_cfg = PYPROJECT['tool']['setuptools']
  assert setuptools_cfg['package-dir'] == {'privjax.configs': 'configs'}
  tree = set()
  for top, package in (('privjax', 'privjax'), ('configs', 'privjax.configs')):
    for dirpath, dirs, files in os.walk(os.path.join(ROOT, top)):
      dirs[:] = [d for d in dirs if d != '__pycache__']
      if any(f.endswith('.py') for f in files):
        rel = os.path.relpath(dirpath, os.path.join(ROOT, top))
        tree.add(package if rel == '.' else f'{package}.{rel.replace(os.sep, ".")}')
  assert set(setuptools_cfg['packages']) == tree
  # The configs are a package (for setuptools) but are still loaded by path, never imported.
  for dirpath, _, files in os.walk(os.path.join(ROOT, 'configs')):
    if any(f.endswith('.py') for f in files) and '__pycache__' not in dirpath:
      assert '__init__.py' in files, dirpath


def test_console_scripts_name_existing_functions():
  from privjax import commands

  scripts = PROJECT['scripts']
  assert sorted(scripts) == sorted(SCRIPTS) and commands.COMMANDS == COMMANDS
  assert scripts['privjax'] == 'privjax.commands:main'
  for command in COMMANDS:
    assert scripts[f'privjax-{command}'] == f'privjax.commands.{command}:run'
  for target in scripts.values():
    module, _, function = target.partition(':')
    assert callable(getattr(importlib.import_module(module), function)), target


def test_license():
  text = open(os.path.join(ROOT, 'LICENSE')).read()
  assert 'Apache License' in text and 'Version 2.0, January 2004' in text
  assert PROJECT['license'] == 'Apache-2.0' and PROJECT['license-files'] == ['LICENSE']


def _build_requirement() -> tuple[int, ...]:
  (requirement,) = PYPROJECT['build-system']['requires']
  return tuple(int(x) for x in re.search(r'>=([\d.]+)', requirement).group(1).split('.'))


def test_wheel_holds_the_package_its_configs_and_the_console_scripts(tmp_path):
  installed = importlib.metadata.version('setuptools')
  if tuple(int(x) for x in installed.split('.')[:2]) < _build_requirement()[:2]:
    pytest.skip(
        f'setuptools {installed} is older than the build requirement; '
        'pip install -r requirements-test.txt'
    )
  # A copy of what the build reads, so the build leaves nothing in the tree.
  src = tmp_path / 'src'
  ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
  for name in ('privjax', 'configs'):
    shutil.copytree(os.path.join(ROOT, name), src / name, ignore=ignore)
  for name in ('pyproject.toml', 'README.md', 'LICENSE'):
    shutil.copy(os.path.join(ROOT, name), src / name)
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'pip',
          'wheel',
          '--no-deps',
          '--no-build-isolation',
          '--no-index',
          '--wheel-dir',
          str(tmp_path / 'dist'),
          str(src),
      ],
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  (wheel,) = (tmp_path / 'dist').glob('privjax-*.whl')
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    dist_info = next(n.split('/')[0] for n in names if n.endswith('.dist-info/METADATA'))
    entry_points = z.read(f'{dist_info}/entry_points.txt').decode()
    metadata = z.read(f'{dist_info}/METADATA').decode()
  expected = set()
  for top, prefix in (('privjax', 'privjax'), ('configs', 'privjax/configs')):
    for dirpath, dirs, files in os.walk(os.path.join(ROOT, top)):
      dirs[:] = [d for d in dirs if d != '__pycache__']
      rel = os.path.relpath(dirpath, os.path.join(ROOT, top))
      for f in files:
        if f.endswith('.py'):
          expected.add('/'.join(p for p in (prefix, '' if rel == '.' else rel, f) if p))
  assert {'privjax/configs/default.py', 'privjax/configs/eval/default.py'} <= expected
  assert expected <= names, sorted(expected - names)
  assert not any(n.startswith(('configs/', 'tests/')) for n in names)
  assert f'{dist_info}/licenses/LICENSE' in names
  for script in SCRIPTS:
    assert f'{script} = {PROJECT["scripts"][script]}' in entry_points
  assert 'License-Expression: Apache-2.0' in metadata
  requires = {
      _requirement_name(line.split(':', 1)[1].strip())
      for line in metadata.splitlines()
      if line.startswith('Requires-Dist:') and 'extra ==' not in line
  }
  assert requires == {_requirement_name(r) for r in PROJECT['dependencies']}
  extras = {
      line.split(':', 1)[1].strip() for line in metadata.splitlines() if 'Provides-Extra' in line
  }
  assert extras == {
      'keras',
      'imagenet',
      'dp',
      'face',
      'tflite',
      'notebook',
      'tensorboard',
      'cuda',
      'tpu',
      'gcs',
      'test',
  }


# Config files named outside a clone.


def test_a_configs_path_that_is_not_here_names_the_packaged_config(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # no configs/ here
  packaged = config_args.resolve('configs/eval/default.py')
  assert os.path.samefile(packaged, os.path.join(ROOT, 'configs', 'eval', 'default.py'))
  assert config_args.load('configs/eval/default.py:tiny').transforms == ('none', 'pca:4')
  with pytest.raises(FileNotFoundError, match='configs/nope.py does not exist'):
    config_args.resolve('configs/nope.py')
  with pytest.raises(FileNotFoundError, match='elsewhere/default.py does not exist'):
    config_args.resolve('elsewhere/default.py')
  # A file that is here wins over the packaged one.
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'default.py').write_text('def get_config(arg=""):\n  return {"a": 1}\n')
  assert config_args.load('configs/default.py') == {'a': 1}


def test_config_flag_finds_packaged_configs_for_its_value_and_default(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  argv = ['prog', '--config', 'configs/default.py:tiny', '--config.total_steps=3']
  monkeypatch.setattr(sys, 'argv', argv)  # where ml_collections looks for the overrides
  fv = flags.FlagValues()
  config_args.DEFINE_config_file('eval_config', 'configs/eval/default.py:fast', flag_values=fv)
  config_args.DEFINE_config_file('config', None, flag_values=fv)
  fv(argv)
  assert fv.eval_config.to_dict() == config_args.load('configs/eval/default.py:fast').to_dict()
  tiny = config_args.load('configs/default.py:tiny', overrides={'total_steps': 3})
  assert fv.config.to_dict() == tiny.to_dict() and fv.config.total_steps == 3
  argv = ['prog', '--config', 'configs/nope.py']
  monkeypatch.setattr(sys, 'argv', argv)
  fv = flags.FlagValues()
  config_args.DEFINE_config_file('config', None, flag_values=fv)
  with pytest.raises(flags.IllegalFlagValueError, match='configs/nope.py does not exist'):
    fv(argv)


def test_config_arguments_are_parsed_and_checked_in_one_place():
  args = config_args.parse('siamese, tiny,csv=a=b.csv', words=('siamese', 'tiny'), options=('csv',))
  assert (args.words, dict(args.options)) == (('siamese', 'tiny'), {'csv': 'a=b.csv'})
  assert (
      'tiny' in args and args.get('csv') == 'a=b.csv' and args.text(options=False) == 'siamese,tiny'
  )
  assert config_args.parse('', words=()) == config_args.Args()
  with pytest.raises(ValueError, match=r"unknown config argument\(s\) \['x', 'big'\]; valid: a="):
    config_args.parse('big,x=1', words=('tiny',), options=('a',))
  with pytest.raises(ValueError, match='csv= is given twice'):
    config_args.parse('csv=a,csv=b', options=None)
  assert config_args.join('a', '', 'b=1') == 'a,b=1'


def test_naming_a_config_imports_no_jax(tmp_path):
  code = (
      'import sys\n'
      'from privjax import config_args\n'
      'for spec in ("configs/paper/vgg16.py:dataset=lfw,weights=torchvision", '
      '"configs/lfw_photos.py:csv=x.csv,nopeek,tiny", "configs/celeba_mini.py:siamese", '
      '"configs/lfw_mini.py", "configs/paper/eval.py:fast"):\n'
      '  config_args.load(spec)\n'
      'heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "optax", '
      '"tensorflow", "tensorflow_datasets"))\n'
      'assert not heavy, heavy\n'
  )
  proc = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path, timeout=120
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
