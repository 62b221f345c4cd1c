"""The command line's surface: `privjax --help`, each command's `--help`, and usage mistakes as one
line. (What each command does is tested with the library it calls: test_train, test_eval, ...)"""

import os
import re
import subprocess
import sys

import pytest

from privjax import commands

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Runs `privjax ARGS...` and reports, after the command's exit, the heavy libraries it loaded.
_PROBE = (
    'import sys\n'
    'from privjax import commands\n'
    'try:\n'
    '  commands.main(["privjax", *sys.argv[1:]])\n'
    'finally:\n'
    '  heavy = sorted({m.split(".")[0] for m in sys.modules} & {"jax", "flax", "tensorflow"})\n'
    '  print("loaded:", ",".join(heavy), file=sys.stderr)\n'
)


# Each command's own flags: what its --help lists (absl's own flags are not).
FLAGS = {
    'train': {'config', 'workdir'},
    'eval': {'config', 'workdir', 'step', 'data_dir', 'compare', 'out'},
    'reproduce': {'workdir', 'config', 'eval_config', 'variants', 'data_dir', 'seeds'},
    'sweep': {'workdir', 'config', 'eval_config', 'variants', 'data_dir', 'cuts'},
    'frontier': {'config', 'workdir', 'quick', 'defences', 'eval_config'},
    'cost': {'config', 'out', 'pca_k', 'repeats', 'cuts', 'num_classes', 'reports'},
    'export': {
        'workdir',
        'out',
        'step',
        'pca_k',
        'clip_percentile',
        'noise_variance',
        'batch_size',
        'input_dtype',
        'platforms',
        'data_dir',
        'tflite',
        'overwrite',
    },
}


def _privjax(*args):
  proc = subprocess.run(
      [sys.executable, '-c', _PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  *stderr, loaded = proc.stderr.strip().splitlines()
  assert loaded.startswith('loaded:'), proc.stderr
  return proc.returncode, proc.stdout, stderr, loaded.split(':', 1)[1].strip()


def test_privjax_help_lists_every_command_with_its_summary():
  rc, out, err, loaded = _privjax('--help')
  assert (rc, err, loaded) == (0, [], '')
  for name in commands.COMMANDS:
    (line,) = [l for l in out.splitlines() if l.startswith(f'  {name} ')]
    assert line.split(None, 1)[1] == commands.summary(name)
  assert max(map(len, out.splitlines())) <= 100


@pytest.mark.parametrize('name', commands.COMMANDS)
def test_command_help_is_for_users_and_fast(name):
  rc, out, err, loaded = _privjax(name, '--help')
  assert (rc, err) == (0, [])
  assert loaded == '', f'`privjax {name} --help` loaded {loaded}'
  assert out.splitlines()[0] == commands.summary(name)
  assert f'usage: privjax {name} ' in out and '\nflags:\n' in out
  # Implementation notes stay in the code: no module paths, import rules or internal names.
  assert not re.search(r'\bprivjax\.[a-z_]|must not import|What lives here|\bimport\b', out), out
  assert max(map(len, out.splitlines())) <= 100
  assert re.findall(r'^  --(\w+)$', out, re.M) == sorted(FLAGS[name])


def test_help_with_python_dash_m():
  proc = subprocess.run(
      [sys.executable, '-m', 'privjax', 'eval', '--help'],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert proc.returncode == 0 and proc.stdout.startswith(commands.summary('eval'))


@pytest.mark.parametrize(
    'args,message',
    [
        (
            ['train', '--config', 'configs/default.py:tiny', '--workdir', 'x', 'stray'],
            'error: unexpected argument stray; see privjax train --help',
        ),
        (['train'], 'error: --config and --workdir are required; see privjax train --help'),
        (['export', '--workdir', 'x'], 'error: --out is required; see privjax export --help'),
        (
            ['frontier', '--bogus'],
            "error: Unknown command line flag 'bogus'; see privjax frontier --help",
        ),
        (
            ['eval'],
            'error: give --workdir RUN (or --compare RUN_A RUN_B ...); see privjax eval --help',
        ),
        (['nope'], 'error: unknown command '),
        ([], 'error: no command given; '),
    ],
)
def test_usage_mistakes_are_one_line_with_a_pointer_to_help(args, message):
  rc, out, err, loaded = _privjax(*args)
  assert rc == 2 and out == ''
  (line,) = err
  assert line.startswith(message), line
  assert line.endswith('--help'), line
  assert loaded == ''
