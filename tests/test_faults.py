"""Faults and bad input, as tables: each case does one thing that a user or the machine can get
wrong, and asserts

  * a refusal: one line (`error: ...` on stderr and no traceback for a command; a one-line
    exception in process) and nothing already on disk changed (file names, mtimes and bytes);
  * a fault (a run killed with SIGKILL, or interrupted in its batch iterator, or a checkpoint file
    cut short): the rerun completes and gives what the uninterrupted run gave (parameters allclose,
    the same final_metrics keys and values, the same metrics.jsonl rows).

All runs are the tiny config (`siamese,tiny`: 6 steps, checkpoints at 3 and 6, rows every 2 steps,
evaluations at 3 and 6) on the tiny data set; one uninterrupted run (`reference`) is compared with.

  kind            cases
  finished run    rerun unchanged; final_metrics.json removed, cut short, or `{"step": N}` (a
                  kill after the final checkpoint, or the old rerun): rebuilt from metrics.jsonl;
                  the final evaluation row missing too: evaluated again
  killed run      SIGKILL after the first checkpoint (a second training meanwhile is refused by the
                  lock, which names its pid; the rerun takes the stale lock over); an exception in
                  the batch iterator (the lock is released); both reruns drop the killed run's rows
                  after the checkpoint and match the uninterrupted history
  workdir lock    a lock of a dead pid, our own pid, or one that cannot be read is taken over; one
                  of a live pid or of another host is refused; in a multi-host job only process 0
                  takes it
  checkpoints     a truncated params file, params metadata or meta in the latest checkpoint:
                  evaluation restores the previous step with a warning and leaves it; a truncated
                  optimizer state: the resumed training sets it aside and retrains; none intact, or
                  the step asked for broken: one-line RunError
  export          --out holding other files, another export, or a file: refused (--overwrite
                  writes and leaves other files); --pca_k above the training images: refused
  command line    a missing config file, a syntax error or exception in one, an unknown or misspelt
                  --config key, an unwritable workdir, a workdir under a file, export into a
                  non-empty --out, export with too large a --pca_k; OS errors of any command
"""

import gc
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import faultlib
import jax
import numpy as np
import pytest

from privjax import cli, export
from privjax import config as config_lib
from privjax.errors import ConfigError, RunError
from privjax.train import checkpoint as ckpt_lib
from privjax.train import loop
from privjax.train import writer as writer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARG = 'siamese,tiny'
# A failed restore leaves orbax's other array reads unawaited: they raise when collected, which
# pytest reports (a command prints nothing); collected in each test, where this filter holds.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


@pytest.fixture(autouse=True)
def _collect_unawaited_reads():
  yield
  gc.collect()


def snapshot(*paths) -> dict:
  """{path: (mtime_ns, sha256)} of every file under `paths`."""
  found = {}
  for top in paths:
    for d, _, files in os.walk(top):
      for name in files:
        path = os.path.join(d, name)
        with open(path, 'rb') as f:
          found[path] = (os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
  return found


def make_config(tfds_dir, arg=ARG):
  config = config_lib.config_module(os.path.join(ROOT, 'configs', 'default.py')).get_config(arg)
  config.dataset.data_dir = tfds_dir
  return config


@pytest.fixture(scope='module')
def reference(tfds_dir, tmp_path_factory):
  """(workdir, result) of the uninterrupted run."""
  workdir = str(tmp_path_factory.mktemp('reference') / 'run')
  return workdir, loop.train_and_evaluate(make_config(tfds_dir), workdir)


def copy_run(reference, tmp_path, name='run') -> str:
  shutil.copytree(reference[0], tmp_path / name)
  return str(tmp_path / name)


def assert_one_line(error) -> str:
  text = str(error.value if hasattr(error, 'value') else error)
  assert text and '\n' not in text, text
  return text


def assert_same_run(workdir, reference):
  """Parameters, final metrics and history of `workdir` are the uninterrupted run's."""
  ref_dir, ref_result = reference
  a, b = ckpt_lib.restore_run(ref_dir)[1], ckpt_lib.restore_run(workdir)[1]
  jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6), a, b)
  with open(os.path.join(workdir, 'final_metrics.json')) as f:
    result = json.load(f)
  assert sorted(result) == sorted(ref_result)
  for key, value in ref_result.items():
    if key != 'train_images_per_sec':  # throughput is measured, not computed
      np.testing.assert_allclose(result[key], value, rtol=1e-5, err_msg=key)
  want, got = writer_lib.read_rows(ref_dir), writer_lib.read_rows(workdir)
  assert [(r['step'], sorted(r)) for r in got] == [(r['step'], sorted(r)) for r in want]
  for r, s in zip(want, got):
    for key in set(r) - {'images_per_sec'}:
      np.testing.assert_allclose(s[key], r[key], rtol=1e-5, atol=1e-7, err_msg=(r['step'], key))
  assert not os.path.exists(os.path.join(workdir, ckpt_lib.LOCK_FILE))


# A finished run, rerun: as it is, or as a kill after its final checkpoint left it.
def _remove_final(w):
  os.remove(os.path.join(w, 'final_metrics.json'))


def _cut_final(w):
  with open(os.path.join(w, 'final_metrics.json'), 'r+b') as f:
    f.truncate(40)


def _short_final(w):  # what a rerun wrote before: the test accuracy and training metrics lost
  with open(os.path.join(w, 'final_metrics.json'), 'w') as f:
    json.dump({'step': 6}, f)


def _no_final_evaluation(w):
  _remove_final(w)
  rows = writer_lib.read_rows(w)
  with open(os.path.join(w, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows[:-1])  # the step-6 evaluation row


FINISHED = {
    'rerun': None,
    'final_metrics_removed': _remove_final,
    'final_metrics_cut_short': _cut_final,
    'final_metrics_step_only': _short_final,
    'final_evaluation_missing': _no_final_evaluation,
}


@pytest.mark.parametrize('damage', list(FINISHED))
def test_finished_run_rerun_keeps_or_rebuilds_its_result(reference, tfds_dir, tmp_path, damage):
  workdir = copy_run(reference, tmp_path)
  if FINISHED[damage]:
    FINISHED[damage](workdir)
  before = snapshot(workdir)
  result = loop.train_and_evaluate(make_config(tfds_dir), workdir)
  after = snapshot(workdir)
  final = os.path.join(workdir, 'final_metrics.json')
  if damage == 'final_evaluation_missing':  # evaluated again: the same numbers
    assert sorted(result) == sorted(reference[1])
    for key in ('test_accuracy', 'test_ce'):
      np.testing.assert_allclose(result[key], reference[1][key], rtol=1e-5)
    assert writer_lib.read_rows(workdir)[-1].keys() == {'step', 'test_accuracy', 'test_ce'}
    return
  assert result == reference[1]
  with open(final) as f:
    assert json.load(f) == reference[1]
  if damage == 'rerun':
    assert after == before  # nothing written, not even final_metrics.json
  else:
    assert {p: v for p, v in after.items() if p != final} == {
        p: v for p, v in before.items() if p != final
    }


def _train_command(faults, tfds_dir, workdir, arg=ARG) -> list[str]:
  """train.py into `workdir` on the tiny data, in a child process with `faults` installed."""
  return faultlib.command(
      faults,
      'train.py',
      '--config',
      f'configs/default.py:{arg}',
      f'--config.dataset.data_dir={tfds_dir}',
      '--workdir',
      workdir,
  )


def _wait_for(condition, proc, seconds=240):
  end = time.time() + seconds
  while not condition():
    if proc.poll() is not None or time.time() > end:
      proc.kill()
      proc.wait()
      pytest.fail(f'the training to kill did not get there (exit {proc.returncode})')
    time.sleep(0.2)


def test_sigkill_after_the_first_checkpoint_resumes_to_the_same_run(
    reference, tfds_dir, tmp_path, caplog
):
  """A training killed with SIGKILL after its step-3 checkpoint and its step-4 row. Meanwhile a
  second training into the workdir is refused (the lock names the first one's pid) untouched; the
  rerun takes the dead run's lock over, drops its step-4 row and matches the uninterrupted run."""
  workdir = str(tmp_path / 'run')
  with open(tmp_path / 'log.txt', 'w') as log:
    proc = subprocess.Popen(
        _train_command([faultlib.Fault(action='block', **faultlib.AT_BATCH_6)], tfds_dir, workdir),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
  try:
    _wait_for(
        lambda: os.path.isdir(os.path.join(workdir, 'checkpoints', '3'))
        and any(r['step'] == 4 for r in writer_lib.read_rows(workdir)),
        proc,
    )
    lock = ckpt_lib.WorkdirLock.read(os.path.join(workdir, ckpt_lib.LOCK_FILE))
    assert lock['pid'] == proc.pid
    before = snapshot(workdir)
    with pytest.raises(RunError, match=f'is in use by another training \\(pid {proc.pid} on') as e:
      loop.train_and_evaluate(make_config(tfds_dir), workdir)
    assert_one_line(e)
    assert snapshot(workdir) == before
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert [r['step'] for r in writer_lib.read_rows(workdir)] == [2, 3, 4]
  with caplog.at_level('WARNING'):
    loop.train_and_evaluate(make_config(tfds_dir), workdir)
  assert f'stale lock of a stopped training (pid {proc.pid}' in caplog.text
  assert_same_run(workdir, reference)


def test_exception_in_training_releases_the_lock_and_resumes(reference, tfds_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  with faultlib.inject(faultlib.Fault(action='interrupt', **faultlib.AT_BATCH_6)):
    with pytest.raises(KeyboardInterrupt):
      loop.train_and_evaluate(make_config(tfds_dir), workdir)
  assert not os.path.exists(os.path.join(workdir, ckpt_lib.LOCK_FILE))
  assert [r['step'] for r in writer_lib.read_rows(workdir)] == [2, 3, 4]
  loop.train_and_evaluate(make_config(tfds_dir), workdir)
  assert_same_run(workdir, reference)


def _dead_pid():
  proc = subprocess.run(
      [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True
  )
  return int(proc.stdout)


LOCKS = {
    # name: (owner of the lock found in the workdir, taken over?)
    'dead_pid': (lambda: {'host': _host(), 'pid': _dead_pid(), 'started': 'then'}, True),
    'own_pid': (lambda: {'host': _host(), 'pid': os.getpid(), 'started': 'then'}, True),
    'unreadable': (lambda: None, True),
    'live_pid': (lambda: {'host': _host(), 'pid': os.getppid(), 'started': 'now'}, False),
    'other_host': (lambda: {'host': 'elsewhere', 'pid': 1, 'started': 'now'}, False),
}


def _host():
  import socket

  return socket.gethostname()


@pytest.mark.parametrize('name', list(LOCKS))
def test_workdir_lock(tmp_path, name):
  make_owner, taken_over = LOCKS[name]
  owner = make_owner()
  path = tmp_path / ckpt_lib.LOCK_FILE
  path.write_text('{"host": ' if owner is None else json.dumps(owner))
  os.utime(path, (time.time() - 60, time.time() - 60))
  before = snapshot(tmp_path)
  if not taken_over:
    with pytest.raises(RunError, match=f'in use by another training \\(pid {owner["pid"]} on') as e:
      ckpt_lib.WorkdirLock.acquire(str(tmp_path))
    hint = 'delete the lock' if name == 'other_host' else 'wait for it to finish'
    assert hint in assert_one_line(e)
    assert snapshot(tmp_path) == before
    return
  lock = ckpt_lib.WorkdirLock.acquire(str(tmp_path))
  assert json.loads(path.read_text())['pid'] == os.getpid()
  with pytest.raises(RunError, match=f'pid {os.getpid()}'):  # ours now: a second one is refused
    _NotUs.acquire(str(tmp_path))
  lock.release()
  assert os.listdir(tmp_path) == []


class _NotUs(ckpt_lib.WorkdirLock):
  """A lock taker that sees our pid as alive: another process of this host."""

  @staticmethod
  def is_stale(owner):
    return False


def test_only_process_0_of_a_multi_host_job_takes_the_lock(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  lock = ckpt_lib.WorkdirLock.acquire(str(tmp_path))
  assert os.listdir(tmp_path) == []
  lock.release()
  monkeypatch.setattr(jax, 'process_index', lambda: 0)
  lock = ckpt_lib.WorkdirLock.acquire(str(tmp_path))
  assert os.listdir(tmp_path) == [ckpt_lib.LOCK_FILE]
  lock.release()


def _largest(directory):
  files = [os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs]
  return max(files, key=os.path.getsize)


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


CORRUPT = {
    'params_data': lambda step: _largest(os.path.join(step, 'params', 'ocdbt.process_0')),
    'params_metadata': lambda step: os.path.join(step, 'params', '_METADATA'),
    'meta': lambda step: os.path.join(step, 'meta', 'metadata'),
}


@pytest.mark.parametrize('part', list(CORRUPT))
def test_corrupt_latest_checkpoint_evaluation_falls_back(reference, tmp_path, caplog, part):
  workdir = copy_run(reference, tmp_path)
  _truncate(CORRUPT[part](os.path.join(workdir, 'checkpoints', '6')))
  before = snapshot(workdir)
  with caplog.at_level('WARNING'):
    step, params, _, _ = ckpt_lib.restore_run(workdir)
  assert step == 3
  (line,) = [r.getMessage() for r in caplog.records if 'cannot be restored' in r.getMessage()]
  assert os.path.join(workdir, 'checkpoints', '6') in line and 'step 3' in line
  assert snapshot(workdir) == before  # the broken checkpoint is left where it is
  with pytest.raises(RunError, match='checkpoints/6 cannot be restored: ') as e:
    ckpt_lib.restore_run(workdir, step=6)
  assert_one_line(e)


def test_corrupt_latest_checkpoint_is_set_aside_and_training_resumes(
    reference, tfds_dir, tmp_path, caplog
):
  """A truncated optimizer state (which evaluation never reads) stops the resume from step 6: the
  training resumes from step 3, moves step 6 to broken_checkpoints/ as it is, and retrains."""
  workdir = copy_run(reference, tmp_path)
  broken = _largest(os.path.join(workdir, 'checkpoints', '6', 'opt_state'))
  _truncate(broken)
  with open(broken, 'rb') as f:
    broken_bytes = f.read()
  with caplog.at_level('WARNING'):
    loop.train_and_evaluate(make_config(tfds_dir), workdir)
  assert 'checkpoints/6 cannot be restored' in caplog.text
  assert os.path.join(workdir, 'broken_checkpoints', '6') in caplog.text
  moved = broken.replace(os.path.join('checkpoints', '6'), os.path.join('broken_checkpoints', '6'))
  with open(moved, 'rb') as f:
    assert f.read() == broken_bytes
  assert_same_run(workdir, reference)


def test_no_intact_checkpoint_is_one_line_and_changes_nothing(reference, tfds_dir, tmp_path):
  workdir = copy_run(reference, tmp_path)
  for step in ('3', '6'):
    _truncate(os.path.join(workdir, 'checkpoints', step, 'meta', 'metadata'))
  before = snapshot(workdir)
  for attempt in (
      lambda: ckpt_lib.restore_run(workdir),
      lambda: loop.train_and_evaluate(make_config(tfds_dir), workdir),
  ):
    with pytest.raises(RunError, match='no checkpoint of .* can be restored \\(step 6: ') as e:
      attempt()
    assert_one_line(e)
    assert snapshot(workdir) == before


def _other_files(out):
  os.makedirs(out)
  with open(os.path.join(out, 'notes.txt'), 'w') as f:
    f.write('mine')


def _another_export(out):
  os.makedirs(out)
  for name in (export.MANIFEST, export.ARTIFACT, export.LOADER):
    with open(os.path.join(out, name), 'w') as f:
      f.write('the other export')


def _a_file(out):
  with open(out, 'w') as f:
    f.write('a file')


EXPORT = {
    # name: (what is at --out, export_run's keywords, the error)
    'other_files': (_other_files, {}, 'is not empty: it holds files \\(notes.txt\\); use a new'),
    'another_export': (_another_export, {}, 'is not empty: it holds another export'),
    'out_is_a_file': (_a_file, {}, 'exists and is not a directory'),
    'pca_k_above_training_images': (
        None,
        {'pca_k': 200},
        "--pca_k 200 is more than the 108 images of the training split 'train'",
    ),
}


@pytest.mark.parametrize('name', list(EXPORT))
def test_export_refusals(reference, tmp_path, name):
  setup, kwargs, message = EXPORT[name]
  out = str(tmp_path / 'out')
  if setup:
    setup(out)
  before = snapshot(reference[0], tmp_path)
  with pytest.raises(ConfigError, match=message) as e:
    export.export_run(reference[0], out, **kwargs)
  assert_one_line(e)
  assert snapshot(reference[0], tmp_path) == before
  assert setup or not os.path.exists(out)


def test_export_overwrite_replaces_the_export_and_keeps_other_files(reference, tmp_path):
  out = str(tmp_path / 'out')
  _another_export(out)
  with open(os.path.join(out, 'notes.txt'), 'w') as f:
    f.write('mine')
  manifest = export.export_run(reference[0], out, overwrite=True)
  assert export.load_exported(out).manifest == manifest
  with open(os.path.join(out, 'notes.txt')) as f:
    assert f.read() == 'mine'


def _config_file(directory, text):
  path = os.path.join(directory, 'my_config.py')
  with open(path, 'w') as f:
    f.write(text)
  return path


TRAIN = [sys.executable, 'train.py']
TINY = ['--config', 'configs/default.py:tiny']
EXPORT_CLI = [sys.executable, '-m', 'privjax.export']
CLI = {
    # name: (the command line, from tmp_path t, the reference run r and the data dir d; what the
    # error line says)
    'missing_config_file': (
        lambda t, r, d: TRAIN + ['--config', 'configs/nope.py:tiny', '--workdir', f'{t}/w'],
        'config file configs/nope.py does not exist',
    ),
    'config_syntax_error': (
        lambda t, r, d: TRAIN
        + [
            '--config',
            _config_file(t, 'def get_config(arg=""):\n  return (\n'),
            '--workdir',
            f'{t}/w',
        ],
        "my_config.py, line 2: syntax error: '(' was never closed",
    ),
    'config_raises': (
        lambda t, r, d: TRAIN
        + [
            '--config',
            _config_file(t, 'def get_config(arg=""):\n  return no\n'),
            '--workdir',
            f'{t}/w',
        ],
        "my_config.py, line 2: NameError: name 'no' is not defined",
    ),
    'unknown_config_key': (
        lambda t, r, d: TRAIN + TINY + ['--config.foo=1', '--workdir', f'{t}/w'],
        'flag --config.foo=1: the config has no key foo; valid keys: batch_size, ',
    ),
    'misspelt_config_key': (
        lambda t, r, d: TRAIN + TINY + ['--config.model.cutt=pool4', '--workdir', f'{t}/w'],
        'the config has no key model.cutt; Did you mean "cut" instead of "cutt"?',
    ),
    'unwritable_workdir': (
        lambda t, r, d: TRAIN
        + TINY
        + [f'--config.dataset.data_dir={d}', '--workdir', '/sys/privjax-test-run'],
        'cannot create --workdir /sys/privjax-test-run: ',
    ),
    'workdir_under_a_file': (
        lambda t, r, d: TRAIN
        + TINY
        + [f'--config.dataset.data_dir={d}', '--workdir', _config_file(t, '') + '/run'],
        'my_config.py/run: Not a directory',
    ),
    'export_into_non_empty_out': (
        lambda t, r, d: EXPORT_CLI
        + ['--workdir', r, '--out', os.path.dirname(_config_file(t, ''))],
        'is not empty: it holds files (my_config.py); use a new or empty directory, or --overwrite',
    ),
    'export_pca_k_above_training_images': (
        lambda t, r, d: EXPORT_CLI + ['--workdir', r, '--out', f'{t}/out', '--pca_k', '500'],
        '--pca_k 500 is more than the 108 images',
    ),
}


@pytest.mark.parametrize('name', list(CLI))
def test_command_line_errors_are_one_line(reference, tfds_dir, tmp_path, name):
  make_args, message = CLI[name]
  args = make_args(str(tmp_path), reference[0], tfds_dir)
  before = snapshot(tmp_path, reference[0])
  proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
  assert snapshot(tmp_path, reference[0]) == before
  assert not os.path.exists(tmp_path / 'w') and not os.path.exists(tmp_path / 'out')


OS_ERRORS = {
    'permission': (
        PermissionError(13, 'Permission denied', '/r/eval'),
        'Permission denied: /r/eval',
    ),
    'full_disk': (OSError(28, 'No space left on device'), 'No space left on device'),
    'not_a_directory': (NotADirectoryError(20, 'Not a directory', '/f/x'), 'Not a directory: /f/x'),
    'privjax_error': (RunError('first\nsecond'), 'first second'),
}


@pytest.mark.parametrize('name', list(OS_ERRORS))
def test_known_errors_of_any_command_are_one_line(capsys, name):
  error, message = OS_ERRORS[name]

  def fail():
    raise error

  with pytest.raises(SystemExit) as e:
    cli.run_or_exit(fail)
  assert e.value.code == 2
  assert capsys.readouterr().err == f'error: {message}\n'


def test_a_bug_keeps_its_traceback():
  def bug():
    raise OSError('no errno: a library bug')

  with pytest.raises(OSError, match='a library bug'):
    cli.run_or_exit(bug)
