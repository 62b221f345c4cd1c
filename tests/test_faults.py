"""Faults and bad input, as tables: each case does one thing that a user or the machine can get
wrong, and asserts

  * a refusal: one line (`error: ...` on stderr and no traceback for a command; a one-line
    exception in process) and nothing already on disk changed (file names, mtimes and bytes);
  * a fault (a run killed with SIGKILL, or interrupted in its batch iterator, or a checkpoint file
    cut short): the rerun completes and gives what the uninterrupted run gave (parameters allclose,
    the same final_metrics keys and values, the same metrics.jsonl rows).

Faults are placed at named calls by tests/faultlib.py (a kill, a hang, an interrupt, ENOSPC), in
process or in a child process. Every table is a `faultlib.Cases` with a one-line description per
case; tools/fault_table.py collects them into benchmarks/results/fault_cases.md.

All runs are the tiny config (`none,tiny`: 6 steps, checkpoints at 3 and 6, rows every 2 steps,
evaluations at 3 and 6) on the tiny data set; one uninterrupted run (`reference`, the session's
trained run) is compared with.

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
  duplicates      a symlink, a byte copy or a JPEG re-encoding of a photo, a file listed twice, a
                  photo listed as two people: one copy kept (none of the last), one warning line,
                  no image in two splits
  not photos      a FIFO, a directory or a device listed as a photo: skipped unopened, with a warning
  data changed    a run's CSV edited (a person's rows dropped, genders swapped) or a photo edited
                  and prepared again: resuming and evaluating refused in one line naming both
                  digests; dataset.allow_new_data=True continues and records the new digest
  bad config      values that trained something else (a bogus schedule, a cosine without
                  decay_steps, a NaN rate, a crop fraction of 5): a one-line ConfigError
  data prep kill  SIGKILL while preparing synthetic_faces (an example, a shard, before
                  dataset_info.json, after metadata.json, before the final rename) or image_folder
                  (reading the CSV, checking images, loading faces): nothing reads as prepared,
                  the rerun prepares what an uninterrupted preparation does
  feature kill    SIGKILL while evaluating (extracting a split, inside the write of a cache,
                  between savez and rename, inside the PCA cache, inside report.json): no part of
                  a file is left under its name, the rerun's report has the same numbers
  training kill   SIGKILL at the 2nd or 6th batch, in the step-3 evaluation, inside the append of
                  a metrics.jsonl row, between config.json's temporary file and its rename, before
                  final_metrics.json: the rerun (in process) is the uninterrupted run
  checkpoint kill SIGKILL inside orbax's save (array data, array _METADATA, the JSON meta item,
                  _CHECKPOINT_METADATA, before the commit rename) or while it deletes an old step
                  (keep_checkpoints=1): the rerun resumes from the last intact step to the same run
                  (orbax also saves the first step, 1, which keep_checkpoints=2 deletes at step 6)
  full disk       ENOSPC in a checkpoint (array data, array metadata, a JSON item,
                  _CHECKPOINT_METADATA), metrics.jsonl, final_metrics.json, an export over a
                  previous one, a feature cache, a report over a previous one: one `error:` line,
                  the previous checkpoint / export / report usable, the rerun the uninterrupted one
"""

import gc
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import conftest
import faultlib
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from privjax import config as config_lib
from privjax import export
from privjax.commands import _cli
from privjax.data import face_renderer, image_folder, photo_builder, pipeline, synthetic_faces
from privjax.errors import ConfigError, EvalError, RunError
from privjax.evaluate import features, memo, protocol
from privjax.experiments import runner
from privjax.report import tables
from privjax.train import checkpoint as ckpt_lib
from privjax.train import loop
from privjax.train import writer as writer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARG = conftest.TRAINED_RUN_ARG  # the reference run is the session's trained run
# A failed restore leaves orbax's other array reads unawaited: they raise when collected, which
# pytest reports (a command prints nothing); collected in each test, where this filter holds.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning'),
]


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
  return conftest.tiny_config_for(tfds_dir, arg)


@pytest.fixture(scope='module')
def reference(trained_run):
  """(workdir, result) of the uninterrupted run: the session's (read only; `copy_run` copies it)."""
  return trained_run


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


FINISHED = faultlib.Cases(
    'finished run, rerun',
    'the result equals the uninterrupted run; nothing else on disk changes',
    {
        'rerun': ('a finished run rerun as it is: writes nothing', None),
        'final_metrics_removed': ('final_metrics.json removed: rebuilt', _remove_final),
        'final_metrics_cut_short': ('final_metrics.json cut short: rebuilt', _cut_final),
        'final_metrics_step_only': (
            'final_metrics.json is {"step": N}: rebuilt',
            _short_final,
        ),
        'final_evaluation_missing': (
            'no final_metrics.json nor final evaluation row: evaluated again',
            _no_final_evaluation,
        ),
    },
)


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
  """A KeyboardInterrupt in the batch iterator after step 4: the lock is released, and the
  rerun matches the uninterrupted run."""
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


LOCKS = faultlib.Cases(
    'workdir lock',
    'taken over (and then ours: another taker is refused), or refused in one line naming its '
    'owner with nothing changed',
    {
        # name: (description, (owner of the lock found in the workdir, taken over?))
        'dead_pid': (
            'a lock of a dead pid: taken over',
            (lambda: {'host': _host(), 'pid': _dead_pid(), 'started': 'then'}, True),
        ),
        'own_pid': (
            'a lock of our own pid: taken over',
            (lambda: {'host': _host(), 'pid': os.getpid(), 'started': 'then'}, True),
        ),
        'unreadable': ('a lock that cannot be read: taken over', (lambda: None, True)),
        'live_pid': (
            'a lock of a live pid: refused',
            (lambda: {'host': _host(), 'pid': os.getppid(), 'started': 'now'}, False),
        ),
        'other_host': (
            'a lock of another host: refused',
            (lambda: {'host': 'elsewhere', 'pid': 1, 'started': 'now'}, False),
        ),
    },
)


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
  """In a multi-host job only process 0 writes train.lock."""
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


CORRUPT = faultlib.Cases(
    'corrupt checkpoint',
    'evaluation restores the previous step with a one-line warning and leaves the broken one; '
    'asking for the broken step is a one-line RunError',
    {
        'params_data': (
            'a truncated parameter data file in the latest checkpoint',
            lambda step: _largest(os.path.join(step, 'params', 'ocdbt.process_0')),
        ),
        'params_metadata': (
            'truncated parameter metadata (_METADATA) in the latest checkpoint',
            lambda step: os.path.join(step, 'params', '_METADATA'),
        ),
        'meta': (
            "a truncated 'meta' item in the latest checkpoint",
            lambda step: os.path.join(step, 'meta', 'metadata'),
        ),
    },
)


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
  """Every checkpoint broken: evaluation and training refuse in one line, nothing changed."""
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


EXPORT = faultlib.Cases(
    'export refusal',
    'a one-line ConfigError; the run and --out unchanged',
    {
        # name: (description, (what is at --out, export_run's keywords, the error))
        'other_files': (
            '--out holds other files',
            (_other_files, {}, 'is not empty: it holds files \\(notes.txt\\); use a new'),
        ),
        'another_export': (
            '--out holds another export',
            (_another_export, {}, 'is not empty: it holds another export'),
        ),
        'out_is_a_file': ('--out is a file', (_a_file, {}, 'exists and is not a directory')),
        'pca_k_above_training_images': (
            '--pca_k above the number of training images',
            (
                None,
                {'pca_k': 200},
                "--pca_k 200 is more than the 108 images of the training split 'train'",
            ),
        ),
    },
)


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
  """export --overwrite over another export: replaced, the other files kept."""
  out = str(tmp_path / 'out')
  _another_export(out)
  with open(os.path.join(out, 'notes.txt'), 'w') as f:
    f.write('mine')
  manifest = export.export_run(copy_run(reference, tmp_path), out, overwrite=True)
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
EXPORT_CLI = [sys.executable, '-m', 'privjax', 'export']
_CLI = {
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
    'stray_positional_argument': (
        lambda t, r, d: TRAIN + TINY + ['--workdir', f'{t}/w', 'runs/x'],
        'unexpected argument runs/x; see python train.py --help',
    ),
    'eval_without_workdir': (
        lambda t, r, d: [sys.executable, 'eval.py', '--config', 'configs/eval/default.py:tiny'],
        'give --workdir RUN (or --compare RUN_A RUN_B ...); see python eval.py --help',
    ),
    'empty_workdir': (
        lambda t, r, d: TRAIN + TINY + [f'--config.dataset.data_dir={d}', '--workdir='],
        '--workdir is empty: give a directory; see python train.py --help',
    ),
}
_CLI_ABOUT = {
    'missing_config_file': 'train.py --config naming a file that does not exist',
    'config_syntax_error': 'a config file with a syntax error',
    'config_raises': 'a config file whose get_config raises',
    'unknown_config_key': '--config.foo=1, a key the config does not have',
    'misspelt_config_key': '--config.model.cutt=..., a misspelt key (the close match is named)',
    'unwritable_workdir': 'a --workdir that cannot be created',
    'workdir_under_a_file': 'a --workdir below a file',
    'export_into_non_empty_out': 'privjax export into a non-empty --out',
    'export_pca_k_above_training_images': 'privjax export --pca_k above the training images',
    'stray_positional_argument': 'train.py with a stray positional argument',
    'eval_without_workdir': 'eval.py without --workdir (nor --compare)',
    'empty_workdir': '--workdir= (empty), which would train in the current directory',
}
CLI = faultlib.Cases(
    'command line',
    'exit status 2, one `error:` line on stderr, no traceback; nothing on disk changed',
    {name: (_CLI_ABOUT[name], value) for name, value in _CLI.items()},
)


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


OS_ERRORS = faultlib.Cases(
    'errors of any command',
    "exit status 2 and exactly `error: <message>` on stderr (a bug's exception keeps its traceback)",
    {
        'permission': (
            'PermissionError with a file name',
            (PermissionError(13, 'Permission denied', '/r/eval'), 'Permission denied: /r/eval'),
        ),
        'full_disk': (
            'OSError ENOSPC',
            (OSError(28, 'No space left on device'), 'No space left on device'),
        ),
        'not_a_directory': (
            'NotADirectoryError',
            (NotADirectoryError(20, 'Not a directory', '/f/x'), 'Not a directory: /f/x'),
        ),
        'privjax_error': (
            'a PrivjaxError of two lines: joined',
            (RunError('first\nsecond'), 'first second'),
        ),
    },
)


@pytest.mark.parametrize('name', list(OS_ERRORS))
def test_known_errors_of_any_command_are_one_line(capsys, name):
  error, message = OS_ERRORS[name]

  def fail():
    raise error

  with pytest.raises(SystemExit) as e:
    _cli.run_or_exit(fail)
  assert e.value.code == 2
  assert capsys.readouterr().err == f'error: {message}\n'


def test_a_bug_keeps_its_traceback():
  """An OSError without errno (a bug, not the system) is re-raised with its traceback."""

  def bug():
    raise OSError('no errno: a library bug')

  with pytest.raises(OSError, match='a library bug'):
    _cli.run_or_exit(bug)


# ---------------------------------------------------------------------------------------------
# kill -9 while preparing data: the built-in synthetic data set (the session's `tfds_dir` is the
# uninterrupted preparation) and image_folder on a CSV of 50 photos made here.


def _photo_csv(root) -> str:
  """10 people x 5 photos (PNG, 40 px) and their CSV (path, identity, gender, smiling)."""
  data = face_renderer.generate_faces(10, 5, 40, 1)
  os.makedirs(os.path.join(root, 'img'))
  lines = ['path,identity,gender,smiling']
  for i, (image, person, gender, smiling) in enumerate(
      zip(data['image'], data['identity'], data['gender'], data['smiling'])
  ):
    Image.fromarray(image).save(os.path.join(root, 'img', f'{i}.png'))
    lines.append(f'img/{i}.png,p{person},{["female", "male"][gender]},{smiling}')
  path = os.path.join(root, 'faces.csv')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """(csv, data dir of its uninterrupted preparation, the prepared folder relative to it)."""
  csv = _photo_csv(str(tmp_path_factory.mktemp('photos')))
  data_dir = str(tmp_path_factory.mktemp('photos_tfds'))
  builder = image_folder.build(data_dir, **PHOTOS_KWARGS(csv))
  return csv, data_dir, os.path.relpath(os.fspath(builder.data_dir), data_dir)


def PHOTOS_KWARGS(csv):  # noqa: N802 -- read as a constant
  return {'csv': csv, 'attributes': ['smiling']}


def _prepare(kind, data_dir, photos):
  if kind == 'synthetic':
    return synthetic_faces.build('tiny', data_dir=data_dir)
  return image_folder.build(data_dir, **PHOTOS_KWARGS(photos[0]))


def _prepared(builder) -> dict:
  """What a training reads from a prepared data set: every split's decoded examples (image
  digests and labels, in order), the features' classes and the metadata (identity groups)."""
  out = {'metadata': json.loads(json.dumps(builder.info.metadata, default=str))}
  out['classes'] = {
      k: list(v.names) for k, v in builder.info.features.items() if hasattr(v, 'names')
  }
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    out[split] = [
        {
            k: hashlib.sha256(v.tobytes()).hexdigest() if k == 'image' else int(v)
            for k, v in source[i].items()
        }
        for i in range(len(source))
    ]
  return out


DATA_KILLS = faultlib.Cases(
    'kill -9 while preparing data',
    "the killed preparation (exit by SIGKILL) left no prepared data set, only TFDS's "
    'incomplete.* folder; the rerun completes with the same examples, labels, classes, metadata '
    'and files as an uninterrupted preparation',
    {
        # name: (description, (data set, the fault's keywords))
        'generating_examples': (
            'synthetic_faces, at its 100th generated example',
            (
                'synthetic',
                dict(
                    target='privjax.data.synthetic_faces.SyntheticFaces._generate_examples',
                    item=100,
                ),
            ),
        ),
        'writing_a_shard': (
            "synthetic_faces, the first split's array_record shard written, the second's starting",
            (
                'synthetic',
                dict(
                    target='tensorflow_datasets.core.file_adapters.ArrayRecordFileAdapter'
                    '.write_examples',
                    call=2,
                ),
            ),
        ),
        'before_dataset_info': (
            'synthetic_faces, every shard written, before dataset_info.json and metadata.json',
            (
                'synthetic',
                dict(target='tensorflow_datasets.core.dataset_info.DatasetInfo.write_to_directory'),
            ),
        ),
        'after_metadata': (
            'synthetic_faces, metadata.json (the identity groups) written, dataset_info.json not',
            (
                'synthetic',
                dict(
                    target='tensorflow_datasets.core.dataset_info.MetadataDict.save_metadata',
                    after=True,
                ),
            ),
        ),
        'before_the_final_rename': (
            'synthetic_faces, everything written, before the incomplete folder is renamed',
            # its repr: (PosixGPath('<...>/incomplete.XXXXXX_1.1.0'), '<...>/1.1.0')
            (
                'synthetic',
                dict(
                    target='etils.epath.gpath._GPath.rename',
                    match=f"_{synthetic_faces.SyntheticFaces.VERSION}'), ",
                ),
            ),
        ),
        'reading_the_csv': (
            'image_folder, while reading the CSV',
            ('photos', dict(target='privjax.data.image_folder._read_table')),
        ),
        'checking_images': (
            'image_folder, while inspecting the 7th photo',
            ('photos', dict(target='privjax.data.photo_builder.inspect_image', call=7)),
        ),
        'loading_faces': (
            'image_folder, while loading the 20th face it writes (after inspecting all 50)',
            ('photos', dict(target='privjax.data.photo_builder.load_face', call=70)),
        ),
    },
)


@pytest.mark.parametrize('name', list(DATA_KILLS))
def test_sigkill_while_preparing_data_then_rerun(tfds_dir, photos, tmp_path, name):
  kind, fault = DATA_KILLS[name]
  data_dir = str(tmp_path / 'tfds')
  if kind == 'synthetic':
    ref_dir = tfds_dir
    prepared = os.path.join('synthetic_faces', 'tiny', str(synthetic_faces.SyntheticFaces.VERSION))
    child = faultlib.call(
        [faultlib.Fault(**fault)], 'privjax.data.synthetic_faces:build', 'tiny', data_dir=data_dir
    )
  else:
    ref_dir, prepared = photos[1], photos[2]
    child = faultlib.call(
        [faultlib.Fault(**fault)],
        'privjax.data.image_folder:build',
        data_dir,
        **PHOTOS_KWARGS(photos[0]),
    )
  proc = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert not os.path.exists(os.path.join(data_dir, prepared))  # nothing that reads as prepared
  builder = _prepare(kind, data_dir, photos)
  assert os.fspath(builder.data_dir) == os.path.join(data_dir, prepared)
  reference = tfds.builder_from_directory(os.path.join(ref_dir, prepared))
  assert _prepared(builder) == _prepared(reference)
  assert sorted(os.listdir(builder.data_dir)) == sorted(os.listdir(reference.data_dir))


# ---------------------------------------------------------------------------------------------
# What a run's data is: duplicates found by content, files that are not photos, a data set that
# changed under a run, and config values that would train something else than asked.


def _photo_folder(photos, root) -> str:
  """A private copy of the photos' folder (symlinks kept); its CSV."""
  folder = os.path.join(root, 'photos')
  shutil.copytree(os.path.dirname(photos[0]), folder, symlinks=True)
  return os.path.join(folder, 'faces.csv')


def _add_rows(csv, *rows):
  with open(csv, 'a') as f:
    f.write(''.join(r + '\n' for r in rows))


def _first_row(csv) -> tuple[str, str]:
  """(the first photo's file, the rest of its CSV row: identity and labels)."""
  with open(csv) as f:
    path, rest = f.read().splitlines()[1].split(',', 1)
  return os.path.join(os.path.dirname(csv), path), rest


def _symlink(csv):
  photo, rest = _first_row(csv)
  os.symlink(photo, os.path.join(os.path.dirname(csv), 'img', 'link.png'))
  _add_rows(csv, f'img/link.png,{rest}')


def _byte_copy(csv):
  photo, rest = _first_row(csv)
  shutil.copyfile(photo, os.path.join(os.path.dirname(csv), 'img', 'copy.png'))
  _add_rows(csv, f'img/copy.png,{rest}')


def _re_encoded(csv):
  photo, rest = _first_row(csv)
  Image.open(photo).save(os.path.join(os.path.dirname(csv), 'img', 'again.jpg'), quality=90)
  _add_rows(csv, f'img/again.jpg,{rest}')


def _listed_twice(csv):
  photo, rest = _first_row(csv)
  _add_rows(csv, f'{os.path.relpath(photo, os.path.dirname(csv))},{rest}')


def _as_another_person(csv):
  photo, rest = _first_row(csv)
  shutil.copyfile(photo, os.path.join(os.path.dirname(csv), 'img', 'copy.png'))
  _add_rows(csv, f'img/copy.png,p9,{rest.split(",", 1)[1]}')


DUPLICATES = faultlib.Cases(
    'duplicate photos (image_folder)',
    'one warning line says how many images were dropped; one copy is kept (none of a photo listed '
    'as two people); no prepared image is in two splits, by pixels or near-identical thumbnails',
    {
        # name: (description, (the change, images dropped, photos lost))
        'symlink': ('a symlink to a photo, listed under its own name', (_symlink, 1, 0)),
        'byte_copy': ('a byte copy of a photo under another name', (_byte_copy, 1, 0)),
        're_encoded_jpeg': (
            'the photo (a PNG) saved again as a JPEG of quality 90: near-identical pixels',
            (_re_encoded, 1, 0),
        ),
        'listed_twice': ('the same file on two lines of the CSV', (_listed_twice, 1, 0)),
        'under_two_identities': (
            'a copy of a photo listed as another person: no one can say which is right, both go',
            (_as_another_person, 2, 1),
        ),
    },
)


def _thumbnails(builder) -> np.ndarray:
  return np.stack(
      [
          np.asarray(
              Image.fromarray(source[i]['image']).convert('L').resize((16, 16), Image.BOX)
          ).ravel()
          for split in builder.info.splits
          for source in [builder.as_data_source(split)]
          for i in range(len(source))
      ]
  )


@pytest.mark.parametrize('name', list(DUPLICATES))
def test_duplicate_photos_are_kept_once(photos, tmp_path, caplog, name):
  change, dropped, lost = DUPLICATES[name]
  csv = _photo_folder(photos, str(tmp_path))
  change(csv)
  with caplog.at_level('WARNING'):
    builder = image_folder.build(str(tmp_path / 'tfds'), **PHOTOS_KWARGS(csv))
  lines = [r.getMessage() for r in caplog.records if 'duplicate images' in r.getMessage()]
  assert len(lines) == 1 and f'dropped {dropped} duplicate images (' in lines[0], lines
  assert_one_line(lines[0])
  assert builder.info.metadata['duplicates']['count'] == dropped
  prepared = _prepared(builder)
  images = [e['image'] for split in builder.info.splits for e in prepared[split]]
  assert len(images) == len(set(images)) == 50 - lost
  assert photo_builder.near_pairs(_thumbnails(builder)) == []


def _fifo(path):
  os.mkfifo(path)


def _device(path):
  os.symlink('/dev/zero', path)  # a link to a character device that never ends


NOT_PHOTOS = faultlib.Cases(
    'files that are not photos (image_folder)',
    'skipped without being opened, with a warning that names the file and what it is; the '
    'preparation completes with the other photos (a FIFO or a device is never read)',
    {
        'fifo': ('a FIFO listed as a photo', (_fifo, 'a FIFO')),
        'directory': ('a directory listed as a photo', (os.mkdir, 'a directory')),
        'device': ('a symlink to /dev/zero listed as a photo', (_device, 'a character device')),
    },
)


@pytest.mark.parametrize('name', list(NOT_PHOTOS))
def test_files_that_are_not_photos_are_skipped(photos, tmp_path, caplog, name):
  make, kind = NOT_PHOTOS[name]
  csv = _photo_folder(photos, str(tmp_path))
  # A name of its own: the same CSV would be the same data set, already prepared in this process.
  path = os.path.join(os.path.dirname(csv), 'img', f'{name}.png')
  make(path)
  _add_rows(csv, f'img/{name}.png,p0,female,0')
  # A builder that opened the FIFO would wait for a writer: this one ends the wait after a minute,
  # so that the test fails instead of hanging.
  done = threading.Event()

  def unblock():
    if not done.wait(60) and name == 'fifo':
      with open(path, 'wb'):
        pass

  threading.Thread(target=unblock, daemon=True).start()
  try:
    with caplog.at_level('WARNING'):
      builder = image_folder.build(str(tmp_path / 'tfds'), **PHOTOS_KWARGS(csv))
  finally:
    done.set()
  assert builder.info.metadata['skipped']['first'] == [f'{path}: not a regular file ({kind})']
  assert f'skipped 1 of 51 images: {path}: not a regular file ({kind})' in caplog.text
  assert sum(builder.info.splits[s].num_examples for s in builder.info.splits) == 50


@pytest.fixture(scope='module')
def photo_run(photos, tmp_path_factory):
  """(config(**changes), workdir, CSV) of a 3-step training on a private copy of the photos."""
  root = str(tmp_path_factory.mktemp('photo_run'))
  csv = _photo_folder(photos, root)
  module = config_lib.config_module(os.path.join(ROOT, 'configs', 'image_folder.py'))

  def config(**changes):
    c = module.get_config(f'none,tiny,csv={csv},attributes=smiling')
    c.dataset.data_dir = os.path.join(root, 'tfds')
    # Its own data set name: `photos` has the same CSV, whose data set this process has prepared
    # (image_folder names a data set by its CSV's content, and reads the files of the first CSV).
    c.dataset.builder_kwargs.prefix = 'photo_run'
    c.total_steps = 3
    for key, value in changes.items():
      section, _, leaf = key.rpartition('.')
      (c[section] if section else c)[leaf] = value
    return c

  workdir = os.path.join(root, 'run')
  loop.train_and_evaluate(config(), workdir)
  return config, workdir, csv


@pytest.fixture
def edited(photo_run):
  """The photo run's CSV and photos, put back as they were after the test."""
  folder = os.path.dirname(photo_run[2])
  kept = {}
  for d, _, files in os.walk(folder):
    for name in files:
      with open(os.path.join(d, name), 'rb') as f:
        kept[os.path.join(d, name)] = f.read()
  yield folder
  for path, data in kept.items():
    with open(path, 'wb') as f:
      f.write(data)


def _without_p5(folder, tmp_path):
  csv = os.path.join(folder, 'faces.csv')
  with open(csv) as f:
    lines = f.read().splitlines(keepends=True)
  with open(csv, 'w') as f:
    f.writelines(l for l in lines if ',p5,' not in l)
  return {}


def _genders_swapped(folder, tmp_path):
  csv = os.path.join(folder, 'faces.csv')
  with open(csv) as f:
    text = f.read()
  with open(csv, 'w') as f:
    f.write(text.replace(',female,', ',x,').replace(',male,', ',female,').replace(',x,', ',male,'))
  return {}


def _photo_changed_and_prepared_again(folder, tmp_path):
  path = os.path.join(folder, 'img', '7.png')
  pixels = np.asarray(Image.open(path)).copy()
  pixels[:8] = 255 - pixels[:8]
  Image.fromarray(pixels).save(path)
  return {'dataset.data_dir': str(tmp_path / 'tfds')}  # the same CSV, prepared again


DATA_CHANGED = faultlib.Cases(
    "a run's data set changed",
    'a one-line RunError naming the digest the run recorded and the new one; nothing on disk '
    'changed (neither a resume nor an evaluation runs on the new data)',
    {
        # name: (description, (the change, resume or evaluate))
        'resume_on_edited_csv': (
            "the CSV lost a person's rows, then the run is resumed",
            (_without_p5, 'resume'),
        ),
        'evaluate_on_edited_csv': (
            "the CSV lost a person's rows, then the run is evaluated",
            (_without_p5, 'evaluate'),
        ),
        'resume_on_relabelled_csv': (
            'the CSV swapped the genders, then the run is resumed',
            (_genders_swapped, 'resume'),
        ),
        'resume_after_photo_changed': (
            'a photo edited (the CSV unchanged) and the data set prepared again, then resumed',
            (_photo_changed_and_prepared_again, 'resume'),
        ),
    },
)


@pytest.mark.parametrize('name', list(DATA_CHANGED))
def test_a_run_on_a_changed_data_set_is_refused(photo_run, edited, tmp_path, name):
  change, action = DATA_CHANGED[name]
  config, reference_dir, _ = photo_run
  workdir = copy_run((reference_dir,), tmp_path)
  recorded = ckpt_lib.read_config(workdir)['dataset']['digest']
  changes = change(edited, tmp_path)
  before = snapshot(workdir)
  with pytest.raises(RunError) as e:
    if action == 'resume':
      loop.train_and_evaluate(config(total_steps=6, **changes), workdir)
    else:
      features.load_run(workdir)
  text = assert_one_line(e)
  assert re.search(
      f'^cannot {action}: {workdir} was trained on data set digest {recorded}, but '
      'image_folder/photo_run_s64_[0-9a-f]{10} has digest [0-9a-f]{20} now',
      text,
  ), text
  assert snapshot(workdir) == before


def test_allow_new_data_continues_on_the_changed_data_set(photo_run, edited, tmp_path, caplog):
  """dataset.allow_new_data=True resumes on an edited CSV with a warning naming both digests and
  records the new digest: a later resume needs no flag, and the new checkpoint evaluates."""
  config, reference_dir, _ = photo_run
  workdir = copy_run((reference_dir,), tmp_path)
  old = ckpt_lib.read_config(workdir)['dataset']['digest']
  _without_p5(edited, tmp_path)
  with caplog.at_level('WARNING'):
    result = loop.train_and_evaluate(
        config(total_steps=6, **{'dataset.allow_new_data': True}), workdir
    )
  assert result['step'] == 6
  new = ckpt_lib.read_config(workdir)['dataset']['digest']
  assert new != old
  assert f'trained on data set digest {old}, but ' in caplog.text
  assert f'has digest {new} now' in caplog.text and 'continuing on the new data' in caplog.text
  loop.train_and_evaluate(config(total_steps=6), workdir)  # finished; nothing refused
  assert features.load_run(workdir).step == 6
  with pytest.raises(RunError, match=f'digest {old}, but '):
    features.load_run(workdir, step=3)  # the checkpoint trained on the old data


def test_the_same_data_prepared_again_resumes(photo_run, tmp_path):
  """The photos prepared again into another data dir (nothing changed): the same digest, resumed."""
  config, reference_dir, _ = photo_run
  workdir = copy_run((reference_dir,), tmp_path)
  digest = ckpt_lib.read_config(workdir)['dataset']['digest']
  result = loop.train_and_evaluate(
      config(total_steps=6, **{'dataset.data_dir': str(tmp_path / 'tfds')}), workdir
  )
  assert result['step'] == 6 and ckpt_lib.read_config(workdir)['dataset']['digest'] == digest


def test_a_run_without_a_digest_resumes_and_records_one(photo_run, tmp_path, caplog):
  """A run from before digests (no dataset.digest in config.json) resumes with a warning that
  its data cannot be checked, and records the digest of the data it resumes on."""
  config, reference_dir, _ = photo_run
  workdir = copy_run((reference_dir,), tmp_path)
  with open(os.path.join(workdir, ckpt_lib.CONFIG_FILE)) as f:
    recorded = json.load(f)  # as saved, with the stamp of the privjax that wrote it
  digest = recorded['dataset'].pop('digest')
  with open(os.path.join(workdir, ckpt_lib.CONFIG_FILE), 'w') as f:
    json.dump(recorded, f)
  with caplog.at_level('WARNING'):
    loop.train_and_evaluate(config(total_steps=6), workdir)
  assert 'it recorded no data digest (trained before privjax recorded them)' in caplog.text
  assert ckpt_lib.read_config(workdir)['dataset']['digest'] == digest


BAD_CONFIG = faultlib.Cases(
    'config value that trains something else',
    'a one-line ConfigError naming the key and what it allows, before anything is written (every '
    'key of config.KEYS is refused the same way: tests/test_config.py)',
    {
        # name: (description, (changes, the error's start))
        'schedule_bogus': (
            'optimizer.schedule=bogus (trained a cosine of one step: rate 0 after step 1)',
            ({'optimizer.schedule': 'bogus'}, "optimizer.schedule='bogus' is not valid"),
        ),
        'cosine_without_decay_steps': (
            'optimizer.schedule=cosine with the default decay_steps=0 (the same)',
            ({'optimizer.schedule': 'cosine'}, "optimizer.schedule='cosine' needs"),
        ),
        'warmup_with_constant_schedule': (
            'optimizer.warmup_steps=100 with the constant schedule (ignored)',
            ({'optimizer.warmup_steps': 100}, 'optimizer.warmup_steps=100 has no effect'),
        ),
        'random_crop_above_one': (
            'input.random_crop=5.0 (a crop fraction)',
            ({'input.random_crop': 5.0}, 'input.random_crop must be a finite number in (0, 1]'),
        ),
        'lr_nan': (
            'optimizer.lr=nan (passed the lr <= 0 check)',
            ({'optimizer.lr': math.nan}, 'optimizer.lr must be a finite number > 0, got nan'),
        ),
        'lr_inf': (
            'optimizer.lr=inf',
            ({'optimizer.lr': math.inf}, 'optimizer.lr must be a finite number > 0, got inf'),
        ),
        'b2_one': (
            'optimizer.b2=1.0 (Adam divides by 1 - b2^t)',
            ({'optimizer.b2': 1.0}, 'optimizer.b2 must be a finite number in [0, 1)'),
        ),
        'negative_seed': (
            'seed=-1 (numpy refuses it in a loader thread)',
            ({'seed': -1}, 'seed must be an integer >= 0, got -1'),
        ),
    },
)


@pytest.mark.parametrize('name', list(BAD_CONFIG))
def test_config_values_that_train_something_else_are_refused(tfds_dir, tmp_path, name):
  changes, message = BAD_CONFIG[name]
  config = make_config(tfds_dir)
  for key, value in changes.items():
    section, _, leaf = key.rpartition('.')
    (config[section] if section else config)[leaf] = value
  with pytest.raises(ConfigError) as e:
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert assert_one_line(e).startswith(message), str(e.value)
  assert not os.path.exists(tmp_path / 'run')


# ---------------------------------------------------------------------------------------------
# Evaluation: a tiny evaluation of the reference run (features of the four splits cached, a PCA
# fitted and cached, the head and the linear attacker, report.json and report.md).

EVAL_NAME = 'faults'


def eval_config():
  config = config_lib.config_module(os.path.join(ROOT, 'configs', 'eval', 'default.py'))
  config = config.get_config('tiny')
  config.name = EVAL_NAME
  config.evaluators = ('head', 'attackers')
  config.attacker_families = ('linear',)
  config.noise_variances = (0.0,)
  config.secrets = ('identity',)
  config.attack_memo = False  # every evaluation computes its attacks
  return config


def evaluate_and_report(workdir: str) -> str:
  """What eval.py does (without plots); returns the report folder. A child's entry point too."""
  report = protocol.evaluate_run(workdir, eval_config())
  out = protocol.report_dir(workdir, eval_config(), report['step'])
  tables.write_report(report, out)
  return out


def run_without_eval(reference, tmp_path) -> str:
  workdir = copy_run(reference, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'eval'), ignore_errors=True)
  return workdir


@pytest.fixture(scope='module')
def evaluated(reference, tmp_path_factory):
  """A copy of the reference run, evaluated uninterrupted: (workdir, its report.json's content)."""
  workdir = run_without_eval(reference, tmp_path_factory.mktemp('evaluated'))
  out = evaluate_and_report(workdir)
  return workdir, tables.load_report(out)


def _kept(report: dict) -> set:
  """The keys that are results: not timings (`*seconds`), versions or the run's folder."""
  return {k for k in report if not k.endswith('seconds') and k not in ('versions', 'workdir')}


def assert_same_report(got, want, where='report'):
  """Equal reports, timings and the run's folder aside; numbers to 1e-6."""
  if isinstance(want, dict):
    assert sorted(_kept(got)) == sorted(_kept(want)), where
    for key in _kept(want):
      assert_same_report(got[key], want[key], f'{where}.{key}')
  elif isinstance(want, list):
    assert len(got) == len(want), where
    for i, (a, b) in enumerate(zip(got, want)):
      assert_same_report(a, b, f'{where}[{i}]')
  elif isinstance(want, float):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=where)
  else:
    assert got == want, where


def assert_no_partial_cache(workdir):
  """Every file of the feature cache under its final name loads whole."""
  for d, _, files in os.walk(os.path.join(workdir, 'eval', 'cache')):
    for name in files:
      if name.endswith('.npz') and '.tmp' not in name:
        with np.load(os.path.join(d, name)) as data:
          for key in data.files:
            data[key]  # noqa: B018 -- reads (and checks) every array


# ---------------------------------------------------------------------------------------------
# kill -9 during evaluation's feature caching


FEATURE_KILLS = faultlib.Cases(
    'kill -9 while caching features',
    'the evaluation killed (SIGKILL) leaves no cache file or report that is a part; the rerun '
    "completes and its report.json has the uninterrupted evaluation's numbers",
    {
        'extracting_train_features': (
            'extracting the training split (its second batch)',
            dict(target='privjax.data.pipeline.eval_batches', call=1, item=2),
        ),
        'writing_a_feature_cache': (
            "in the middle of writing the training split's cache (np.savez)",
            dict(target='builtins.open', match='/train.npz', partial=True),
        ),
        'between_savez_and_rename': (
            "the test split's cache written to its temporary name, not renamed",
            dict(target='os.replace', match='/test.npz'),
        ),
        'writing_the_pca_cache': (
            'in the middle of writing the fitted PCA (pca_4.npz)',
            dict(target='builtins.open', match='pca_4.npz', partial=True),
        ),
        'writing_the_report': (
            'in the middle of writing report.json',
            dict(target='builtins.open', match='report.json', partial=True),
        ),
    },
)


@pytest.mark.parametrize('name', list(FEATURE_KILLS))
def test_sigkill_while_caching_features_then_rerun(reference, evaluated, tmp_path, name):
  workdir = run_without_eval(reference, tmp_path)
  child = faultlib.call(
      [faultlib.Fault(**FEATURE_KILLS[name])], 'test_faults:evaluate_and_report', workdir
  )
  proc = subprocess.run(child, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert_no_partial_cache(workdir)
  report = os.path.join(protocol.report_dir(workdir, eval_config(), 6), 'report.json')
  assert not os.path.exists(report)  # the first evaluation: no report, not a part of one
  out = evaluate_and_report(workdir)
  assert_same_report(tables.load_report(out), evaluated[1])
  assert_no_partial_cache(workdir)


# ---------------------------------------------------------------------------------------------
# A full disk (simulated: the write named raises ENOSPC, after writing half its data where it is a
# file write) while writing checkpoints, metrics, the final result, an export, a feature cache or
# a report. The command says so in one line; what was there before stays usable.


def _stopped_after_checkpoint_3(reference, tmp_path) -> str:
  """The reference run as a kill after its step-3 checkpoint leaves it (with later rows, which
  the resume drops)."""
  workdir = run_without_eval(reference, tmp_path)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '6'))
  os.remove(os.path.join(workdir, 'final_metrics.json'))
  return workdir


@pytest.fixture(scope='module')
def exported(reference, tmp_path_factory):
  """An export of a copy of the reference run (export caches the run's features in the run)."""
  top = tmp_path_factory.mktemp('exported')
  out = str(top / 'out')
  export.export_run(copy_run(reference, top), out)
  return out


ORBAX = 'orbax.checkpoint._src'
DISK_FULL = faultlib.Cases(
    'full disk',
    'one `error:` line naming the failure (no traceback, no logged traceback); what was on disk '
    'before stays usable: the training resumes (or the finished run reruns) to the uninterrupted '
    'run, the previous export loads unchanged, the evaluation reruns to the same report, the '
    'previous report is unchanged',
    {
        # name: (description, (what is written, the fault's keywords, what the error says))
        'checkpoint_array_data': (
            "the step-6 checkpoint's array data (TensorStore's write error)",
            (
                'train',
                dict(
                    target=f'{ORBAX}.serialization.serialization.async_serialize_from_host',
                    action='enospc_tensorstore',
                ),
                'cannot save checkpoint step 6 in ',
            ),
        ),
        'checkpoint_array_metadata': (
            "the step-6 checkpoint's array metadata (_METADATA)",
            (
                'train',
                dict(target=f'{ORBAX}.path.async_path.write_text', match='_METADATA'),
                'cannot save checkpoint step 6 in ',
            ),
        ),
        'checkpoint_json_item': (
            "the step-6 checkpoint's meta item, half written",
            (
                'train',
                dict(
                    target='etils.epath.abstract_path.Path.write_text',
                    match='meta.orbax-checkpoint-tmp',
                    partial=True,
                ),
                'cannot save checkpoint step 6 in ',
            ),
        ),
        'checkpoint_commit': (
            "the step-6 checkpoint's _CHECKPOINT_METADATA, half written (orbax still commits the "
            'step, which restores)',
            (
                'train',
                dict(
                    target='etils.epath.abstract_path.Path.write_text',
                    match='_CHECKPOINT_METADATA',
                    partial=True,
                ),
                'cannot save checkpoint step 6 in ',
            ),
        ),
        'metrics_jsonl': (
            'metrics.jsonl, rewritten with the step-4 row, half written',
            (
                'train',
                dict(target='builtins.open', match='metrics.jsonl.tmp', partial=True),
                'No space left on device',
            ),
        ),
        'final_metrics': (
            'final_metrics.json, half written',
            (
                'train',
                dict(target='builtins.open', match='final_metrics.json.tmp', partial=True),
                'No space left on device',
            ),
        ),
        'export_over_a_previous_export': (
            'export --overwrite over a previous export: extractor.bin half written',
            (
                'export',
                dict(target='builtins.open', match='extractor.bin', partial=True),
                'No space left on device',
            ),
        ),
        'feature_cache': (
            "evaluation: the training split's feature cache, half written (the line names it)",
            (
                'eval',
                dict(target='builtins.open', match='/train.npz', partial=True),
                'No space left on device: /',
            ),
        ),
        'pca_cache': (
            'evaluation: the fitted PCA (pca_4.npz), half written while the settings progress bar '
            'is open (the line names the file and starts a line of its own)',
            (
                'eval',
                dict(target='builtins.open', match='pca_4.npz', partial=True),
                'pca_4.npz',
            ),
        ),
        'report_over_a_previous_report': (
            'a second evaluation: report.json half written over the first',
            (
                'report',
                dict(target='builtins.open', match='report.json', partial=True),
                'No space left on device',
            ),
        ),
    },
)


@pytest.mark.parametrize('name', list(DISK_FULL))
def test_full_disk_is_one_line_and_keeps_what_was_there(
    reference, tfds_dir, exported, evaluated, tmp_path, capsys, caplog, name
):
  what, fault, message = DISK_FULL[name]
  fault = faultlib.Fault(**{'action': 'enospc', **fault})
  if what == 'train':
    workdir = _stopped_after_checkpoint_3(reference, tmp_path)
    job = lambda: loop.train_and_evaluate(make_config(tfds_dir), workdir)  # noqa: E731
  elif what == 'export':
    workdir = str(tmp_path / 'out')
    shutil.copytree(exported, workdir)
    run = copy_run(reference, tmp_path)
    job = lambda: export.export_run(run, workdir, overwrite=True)  # noqa: E731
  elif what == 'eval':
    workdir = run_without_eval(reference, tmp_path)
    job = lambda: evaluate_and_report(workdir)  # noqa: E731
  else:
    workdir = copy_run(evaluated, tmp_path)
    job = lambda: tables.write_report(  # noqa: E731
        {**evaluated[1], 'step': 6}, protocol.report_dir(workdir, eval_config(), 6)
    )
  before = snapshot(workdir)
  capsys.readouterr()
  with faultlib.inject(fault), caplog.at_level('WARNING'):
    with pytest.raises(SystemExit) as e:
      _cli.run_or_exit(job)
  assert e.value.code == 2
  err = capsys.readouterr().err
  (line,) = [l for l in err.splitlines() if l.startswith('error:')]  # (and progress bars)
  assert message in line and 'No space left on device' in line, line
  assert 'Traceback' not in err
  assert not [r for r in caplog.records if r.exc_info], 'a traceback was logged'
  if what == 'train':
    # Saved anyway: the step-6 checkpoint before final_metrics.json, and the one whose only loss
    # is orbax's _CHECKPOINT_METADATA (orbax commits the step; it restores).
    saved = name in ('final_metrics', 'checkpoint_commit')
    assert ckpt_lib.restore_run(workdir)[0] == (6 if saved else 3)
    loop.train_and_evaluate(make_config(tfds_dir), workdir)
    assert_same_run(workdir, reference)
  elif what == 'export':
    assert snapshot(workdir) == before  # the previous export, whole
    assert export.load_exported(workdir).manifest['checkpoint_step'] == 6
  elif what == 'eval':
    assert_no_partial_cache(workdir)
    assert_same_report(tables.load_report(evaluate_and_report(workdir)), evaluated[1])
  else:
    assert snapshot(workdir) == before  # the first report, whole


# ---------------------------------------------------------------------------------------------
# kill -9 during training and during checkpoint writing: a training (train.py, the tiny config) in
# a child process SIGKILLs itself at a named point; the rerun, in process, completes and is the
# uninterrupted run (`reference`). The children of both tables start together, three at a time,
# when the first of these tests runs (each is a whole training: ~12 s alone).


def _committed_steps(workdir) -> list[int]:
  directory = os.path.join(workdir, 'checkpoints')
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(n) for n in names if n.isdigit())


def _tmp_checkpoints(workdir) -> list[str]:
  """orbax's temporary folders of an interrupted save (a step's or an item's)."""
  return [
      os.path.relpath(os.path.join(d, n), workdir)
      for d, dirs, _ in os.walk(os.path.join(workdir, 'checkpoints'))
      for n in dirs
      if '.orbax-checkpoint-tmp' in n
  ]


TRAINING_KILLS = faultlib.Cases(
    'kill -9 during training',
    'the training dies by SIGKILL at that point (no final_metrics.json; no checkpoint after the '
    'point, or exactly the ones listed); the rerun completes with the final_metrics.json numbers, '
    'metrics.jsonl rows and latest checkpoint (step 6, parameters allclose) of the uninterrupted '
    'run',
    {
        # name: (description, (the fault's keywords, the committed steps the kill leaves: a list,
        # or the newest step there may be; orbax saves the first step too, and asynchronously))
        'at_the_second_batch': (
            'at the 2nd batch, before the step-3 checkpoint',
            (dict(target='privjax.data.pipeline.pair_batches', item=2, match="'start_step': 0"), 1),
        ),
        'after_the_first_checkpoint': (
            'at the 6th batch (step 4 done), after the step-3 checkpoint and the step-4 row',
            (dict(**faultlib.AT_BATCH_6), 3),
        ),
        'during_the_periodic_evaluation': (
            "in the step-3 test evaluation's second batch, before its row and checkpoint",
            (dict(target='privjax.data.pipeline.eval_batches', call=1, item=2), 1),
        ),
        'appending_metrics_jsonl': (
            'in the middle of appending the step-2 row to metrics.jsonl (half a line written)',
            (dict(target='builtins.open', match="metrics.jsonl', 'a'", partial=True), 1),
        ),
        'writing_config_json': (
            'at the start: config.json written to its temporary name, not renamed',
            (dict(target='os.replace', match='config.json.tmp'), []),
        ),
        'before_final_metrics': (
            'after the last step and the step-6 checkpoint, before final_metrics.json',
            (dict(target='privjax.paths.write_atomic', match='final_metrics.json'), [3, 6]),
        ),
    },
)

CHECKPOINT_KILLS = faultlib.Cases(
    'kill -9 during checkpoint writing',
    "the training dies by SIGKILL inside orbax's save: the step is not committed and its "
    'temporary folder is left (or the old step is left half deleted); the rerun resumes from the '
    'last intact checkpoint and completes with the final_metrics.json numbers, metrics.jsonl rows '
    'and latest checkpoint (step 6, parameters allclose) of the uninterrupted run',
    {
        # name: (description, (the fault's keywords, the committed steps the kill leaves, whether
        # a temporary folder is left, keep_checkpoints)). orbax saves steps 1 (its first), 3, 6.
        'writing_array_data': (
            "TensorStore writing the first checkpoint's (step 1) first array",
            (
                dict(target=f'{ORBAX}.serialization.serialization.async_serialize_from_host'),
                [],
                True,
                2,
            ),
        ),
        'writing_array_metadata': (
            "writing the step-6 checkpoint's parameter metadata (_METADATA)",
            (
                dict(
                    target=f'{ORBAX}.path.async_path.write_text',
                    match='/6.orbax-checkpoint-tmp/params.orbax-checkpoint-tmp/_METADATA',
                ),
                [1, 3],
                True,
                2,
            ),
        ),
        'writing_the_json_meta_item': (
            "the step-6 checkpoint's meta item (JSON), half written",
            (
                dict(
                    target='etils.epath.abstract_path.Path.write_text',
                    match='/6.orbax-checkpoint-tmp/meta.orbax-checkpoint-tmp',
                    partial=True,
                ),
                [1, 3],
                True,
                2,
            ),
        ),
        'writing_checkpoint_metadata': (
            "the first checkpoint's _CHECKPOINT_METADATA, half written",
            (
                dict(
                    target='etils.epath.abstract_path.Path.write_text',
                    match='_CHECKPOINT_METADATA',
                    partial=True,
                ),
                [],
                True,
                2,
            ),
        ),
        'before_the_commit_rename': (
            "step 6 complete in its temporary folder, in orbax's background commit before the "
            'rename that commits it',
            (
                dict(target=f'{ORBAX}.path.async_path.rename', match='/6.orbax-checkpoint-tmp'),
                [1, 3],
                True,
                2,
            ),
        ),
        'deleting_the_old_checkpoint': (
            'keep_checkpoints=1: step 6 committed, step 3 being deleted (its 3rd file)',
            (dict(target='os.unlink', match='/checkpoints/3/', call=3), [3, 6], False, 1),
        ),
    },
)


def _kill_cases():
  """{name: (fault keywords, committed steps, keep_checkpoints)} of both tables."""
  cases = {n: (f, steps, 2) for n, (f, steps) in TRAINING_KILLS.items()}
  cases.update({n: (f, steps, keep) for n, (f, steps, _, keep) in CHECKPOINT_KILLS.items()})
  return cases


@pytest.fixture(scope='module')
def sigkilled(tfds_dir, tmp_path_factory, request):
  """{name: future of (workdir, the killed child's CompletedProcess)}: the child of every kill case
  that this session runs, three at a time."""
  from concurrent import futures

  tests = (
      'test_sigkill_during_training_then_rerun',
      'test_sigkill_during_checkpoint_writing_then_rerun',
  )
  wanted = {
      item.callspec.params['name']
      for item in request.session.items
      if getattr(item, 'originalname', None) in tests
  }

  top = tmp_path_factory.mktemp('sigkilled')

  def run(name, fault, keep):
    workdir = str(top / name)
    cmd = _train_command([faultlib.Fault(**fault)], tfds_dir, workdir)
    cmd.append(f'--config.keep_checkpoints={keep}')
    return workdir, subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)

  pool = futures.ThreadPoolExecutor(3)
  jobs = {
      name: pool.submit(run, name, f, keep)
      for name, (f, _, keep) in _kill_cases().items()
      if name in wanted
  }
  yield jobs
  pool.shutdown(cancel_futures=True)


def _rerun_after_kill(sigkilled, reference, tfds_dir, name):
  _, steps, keep = _kill_cases()[name]
  workdir, proc = sigkilled[name].result()
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  left = _committed_steps(workdir)
  if isinstance(steps, int):  # no checkpoint after the point
    assert all(s <= steps for s in left), left
  else:
    assert left == steps, left
  assert not os.path.exists(os.path.join(workdir, 'final_metrics.json'))
  config = make_config(tfds_dir)
  config.keep_checkpoints = keep
  loop.train_and_evaluate(config, workdir)
  assert_same_run(workdir, reference)
  assert _committed_steps(workdir)[-1] == 6
  return workdir


def _torn_last_row(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    text = f.read()
  return text and not text.endswith('\n')


def _config_not_renamed(workdir):
  names = os.listdir(workdir)
  return 'config.json' not in names and any(n.startswith('config.json.tmp.') for n in names)


# What the kill left, where it says more than the committed steps (the hook landed there).
_KILL_LEFT = {'appending_metrics_jsonl': _torn_last_row, 'writing_config_json': _config_not_renamed}


@pytest.mark.parametrize('name', list(TRAINING_KILLS))
def test_sigkill_during_training_then_rerun(sigkilled, reference, tfds_dir, name):
  if name in _KILL_LEFT:
    workdir, _ = sigkilled[name].result()
    assert _KILL_LEFT[name](workdir), sorted(os.listdir(workdir))
  _rerun_after_kill(sigkilled, reference, tfds_dir, name)


@pytest.mark.parametrize('name', list(CHECKPOINT_KILLS))
def test_sigkill_during_checkpoint_writing_then_rerun(sigkilled, reference, tfds_dir, name):
  _, steps, tmp_left, _ = CHECKPOINT_KILLS[name]
  workdir, _ = sigkilled[name].result()
  left = _tmp_checkpoints(workdir)
  if tmp_left:  # the temporary folder of the step being saved (orbax saves 1, 3, 6)
    saving = min({1, 3, 6} - set(steps))
    assert f'{saving}.orbax-checkpoint-tmp' in {p.split(os.sep)[1] for p in left}, left
  else:  # killed at the 3rd file that orbax's deleter unlinks under checkpoints/3 (nothing else
    # unlinks there): step 3 half deleted beside step 6, no save in progress
    assert not left, left
  _rerun_after_kill(sigkilled, reference, tfds_dir, name)


# ---------------------------------------------------------------------------------------------
# A run whose training is in progress: its train.lock held by a live process of this host (a
# sleeping child stands in for the training; the lock is what a training writes). Its latest
# checkpoint changes as it trains and orbax deletes the ones it does not keep (keep_checkpoints).


@pytest.fixture(scope='module')
def live_training():
  """`hold(workdir)`: writes the train.lock of a live training (another process) into workdir."""
  import socket

  proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])
  started = time.time()

  def hold(workdir):
    owner = {'host': socket.gethostname(), 'pid': proc.pid, 'started': 'now', 'time': started}
    with open(os.path.join(workdir, ckpt_lib.LOCK_FILE), 'w') as f:
      json.dump(owner, f)
    return proc.pid

  yield hold
  proc.kill()
  proc.wait()


def _keep_only_the_last(workdir):
  """The run's config.json says keep_checkpoints=1: its training keeps step 6 only."""
  path = os.path.join(workdir, ckpt_lib.CONFIG_FILE)
  with open(path) as f:
    config = json.load(f)
  config['keep_checkpoints'] = 1
  with open(path, 'w') as f:
    json.dump(config, f)


LIVE_TRAINING = faultlib.Cases(
    'training in progress',
    'reading the latest checkpoint, or one the training will delete, is refused in one line that '
    'names the training and the steps it keeps, nothing changed; a step it keeps is read',
    {
        # name: (description, (prepare the run, what reads it, the error or None))
        'eval_latest': (
            'evaluation without --step',
            (None, lambda w: protocol.evaluate(w, eval_config()), 'its latest checkpoint changes'),
        ),
        'export_latest': (
            'export without --step',
            (
                None,
                lambda w: export.export_run(w, os.path.join(w, 'out')),
                'its latest checkpoint changes',
            ),
        ),
        'eval_step_not_kept': (
            'evaluation of step 3 of a training that keeps only its last checkpoint',
            (
                _keep_only_the_last,
                lambda w: protocol.evaluate(w, eval_config(), step=3),
                'it will delete checkpoint step 3; wait for it to finish, or name a checkpoint it '
                'keeps with --step (step 6)',
            ),
        ),
        'kept_step': (
            'reading step 3 of a training that keeps its last two checkpoints: restored',
            (None, lambda w: ckpt_lib.restore_run(w, step=3), None),
        ),
    },
)


@pytest.mark.parametrize('name', list(LIVE_TRAINING))
def test_a_run_in_training_is_read_only_at_a_step_it_keeps(
    reference, live_training, tmp_path, name
):
  prepare, read, message = LIVE_TRAINING[name]
  workdir = copy_run(reference, tmp_path)
  if prepare:
    prepare(workdir)
  pid = live_training(workdir)
  if message is None:
    assert read(workdir)[0] == 3
    return
  before = snapshot(workdir)
  with pytest.raises(RunError, match=f'is being trained now \\(pid {pid} on') as e:
    read(workdir)
  assert message in assert_one_line(e)
  assert snapshot(workdir) == before


def test_eval_command_refuses_a_run_in_training(reference, live_training, tmp_path):
  """`privjax eval` of a run whose training is in progress: exit status 2 and one `error:` line
  naming the training's pid, nothing changed."""
  workdir = copy_run(reference, tmp_path)
  pid = live_training(workdir)
  before = snapshot(workdir)
  args = [sys.executable, '-m', 'privjax', 'eval', '--workdir', workdir]
  proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  (line,) = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert f'is being trained now (pid {pid} on' in line and '--step (step 3, 6)' in line, line
  assert snapshot(workdir) == before


def test_evaluations_of_two_steps_sit_side_by_side(evaluated, tmp_path, caplog):
  """An evaluation's report folder names its checkpoint step: with the latest checkpoint broken,
  the evaluation falls back to step 3 and writes eval/<name>/step_3/, leaving the step-6 report."""
  workdir = copy_run(evaluated, tmp_path)
  step_6 = protocol.report_dir(workdir, eval_config(), 6)
  assert step_6.endswith(os.path.join('eval', EVAL_NAME, 'step_6'))
  before = snapshot(step_6)
  _truncate(os.path.join(workdir, 'checkpoints', '6', 'meta', 'metadata'))
  with caplog.at_level('WARNING'):
    report, out = protocol.evaluate(workdir, eval_config())
  assert report['step'] == 3 and out == protocol.report_dir(workdir, eval_config(), 3)
  assert tables.load_report(out)['step'] == 3
  assert snapshot(step_6) == before
  assert tables.load_report(step_6)['step'] == 6


# ---------------------------------------------------------------------------------------------
# Files privjax wrote itself, damaged (cut short, or other bytes): one line naming the file and
# what to do; what privjax can rebuild (a report, a cache) it rebuilds, and says so.


def _cut(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def _damage_middle_row(workdir):
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path) as f:
    lines = f.readlines()
  lines[1] = lines[1][: len(lines[1]) // 2] + '\n'
  with open(path, 'w') as f:
    f.writelines(lines)


DAMAGED = faultlib.Cases(
    'damaged file privjax wrote',
    'one line naming the file and what to do, nothing changed',
    {
        # name: (description, (damage the run, what reads it, the error's type and text))
        'config_json': (
            'config.json cut short: a resume is refused (evaluation does not need it)',
            (
                lambda w: _cut(os.path.join(w, 'config.json')),
                'train',
                RunError,
                'config.json is damaged (not JSON: ',
            ),
        ),
        'metrics_jsonl_middle_line': (
            'metrics.jsonl with its 2nd line cut short (not the last, which only a kill cuts): '
            'the resume is refused instead of dropping it',
            (
                _damage_middle_row,
                'resume',
                RunError,
                'metrics.jsonl line 2 is damaged (not JSON: ',
            ),
        ),
        'report_json': (
            'report.json cut short: reading it (eval --compare) is refused',
            (
                lambda w: _cut(os.path.join(_report_of(w), 'report.json')),
                'compare',
                EvalError,
                'report.json is damaged (not JSON: ',
            ),
        ),
    },
)


def _report_of(workdir):
  return protocol.report_dir(workdir, eval_config(), 6)


@pytest.mark.parametrize('name', list(DAMAGED))
def test_a_damaged_file_is_one_line(evaluated, tfds_dir, tmp_path, name):
  damage, what, error, message = DAMAGED[name]
  workdir = copy_run(evaluated, tmp_path)
  if what == 'resume':  # stopped after its step-3 checkpoint: the resume reads the history
    shutil.rmtree(os.path.join(workdir, 'checkpoints', '6'))
    os.remove(os.path.join(workdir, 'final_metrics.json'))
  damage(workdir)
  before = snapshot(workdir)
  if what == 'compare':
    with pytest.raises(error) as e:
      tables.load_report(tables.newest_step_dir(os.path.join(workdir, 'eval', EVAL_NAME)))
  else:
    with pytest.raises(error) as e:
      loop.train_and_evaluate(make_config(tfds_dir), workdir)
  assert message in assert_one_line(e)
  assert snapshot(workdir) == before


REBUILT = faultlib.Cases(
    'damaged file privjax rebuilds',
    'a one-line warning naming the file; the file is made again, and the result equals the '
    "uninterrupted evaluation's",
    {
        # name: (description, the file, relative to the step-6 feature cache or report folder)
        'feature_cache': (
            "the training split's feature cache (eval/cache/step_6/train.npz) cut short: "
            'recomputed',
            ('cache', 'train.npz'),
        ),
        'pca_cache': (
            'the fitted PCA (eval/cache/step_6/pca_4.npz) overwritten with other bytes: refitted',
            ('cache', 'pca_4.npz'),
        ),
        'report_on_resume': (
            'report.json cut short, then the experiment resumed (frontier, reproduce): the run is '
            'evaluated again',
            ('report', 'report.json'),
        ),
    },
)


@pytest.mark.parametrize('name', list(REBUILT))
def test_a_damaged_cache_or_report_is_rebuilt(evaluated, tmp_path, capsys, caplog, name):
  from privjax.experiments import runner

  where, file = REBUILT[name]
  workdir = copy_run(evaluated, tmp_path)
  folder = os.path.join(workdir, 'eval', 'cache', 'step_6') if where == 'cache' else None
  path = os.path.join(folder or _report_of(workdir), file)
  if name == 'pca_cache':
    with open(path, 'wb') as f:
      f.write(b'not an npz archive')
  else:
    _cut(path)
  with caplog.at_level('WARNING'):
    if where == 'cache':
      out = evaluate_and_report(workdir)
    else:
      _, out, _ = runner.evaluate_run(workdir, eval_config(), reuse_report=True)
  said = caplog.text if where == 'cache' else capsys.readouterr().out
  (line,) = [l for l in said.splitlines() if 'is damaged' in l]
  assert path in line, line
  assert_same_report(tables.load_report(out), evaluated[1])
  assert_no_partial_cache(workdir)


# ---------------------------------------------------------------------------------------------
# Ctrl-C (a KeyboardInterrupt at a named point, in a child process) and the environment.


INTERRUPTS = faultlib.Cases(
    'Ctrl-C',
    'exit status 130 and one last line saying where it stopped and that a rerun resumes; no '
    'traceback, no lock left',
    {
        # name: (description, (the command, from the run to evaluate r and the data dir d; the
        # fault; the line))
        'training': (
            'train.py, Ctrl-C at the 6th batch (after step 4)',
            (
                lambda t, r, d: _train_command(
                    [faultlib.Fault(action='interrupt', **faultlib.AT_BATCH_6)], d, f'{t}/w'
                ),
                'training interrupted at step 4; rerun the same command to resume',
            ),
        ),
        'evaluation': (
            'privjax eval, Ctrl-C while it extracts features',
            (
                lambda t, r, d: faultlib.command(
                    [
                        faultlib.Fault(
                            target='privjax.data.pipeline.eval_batches', action='interrupt', item=2
                        )
                    ],
                    '-m',
                    'privjax',
                    'eval',
                    '--workdir',
                    r,
                    '--config',
                    'configs/eval/default.py:tiny',
                ),
                'evaluation interrupted; rerun the same command to resume',
            ),
        ),
    },
)


@pytest.mark.parametrize('name', list(INTERRUPTS))
def test_ctrl_c_is_one_line(reference, tfds_dir, tmp_path, name):
  make_args, message = INTERRUPTS[name]
  run = run_without_eval(reference, tmp_path)
  proc = subprocess.run(
      make_args(str(tmp_path), run, tfds_dir), cwd=ROOT, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 130, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  assert proc.stderr.splitlines()[-1].startswith(message), proc.stderr[-2000:]
  assert not os.path.exists(tmp_path / 'w' / ckpt_lib.LOCK_FILE)


ENVIRONMENT = faultlib.Cases(
    'bad environment variable',
    'a one-line error that names the variable and its value',
    {
        # name: (description, (the variable, its value from tmp_path, what runs, the error))
        'tfds_data_dir_a_file': (
            'TFDS_DATA_DIR naming a file, with no dataset.data_dir in the config',
            (
                'TFDS_DATA_DIR',
                lambda t: _config_file(t, ''),
                lambda c: pipeline.get_builder(c.dataset),
                'is not a directory; set it to a directory privjax can write',
            ),
        ),
        'tfds_data_dir_under_a_file': (
            'TFDS_DATA_DIR below a file',
            (
                'TFDS_DATA_DIR',
                lambda t: _config_file(t, '') + '/tfds',
                lambda c: pipeline.get_builder(c.dataset),
                'cannot be created: ',
            ),
        ),
        'privjax_cache_dir_a_file': (
            'PRIVJAX_CACHE_DIR naming a file: the attack memo cannot be written',
            (
                'PRIVJAX_CACHE_DIR',
                lambda t: _config_file(t, ''),
                lambda c: memo.save('ab' * 32, {'x': 1}),
                'set PRIVJAX_CACHE_DIR to a writable directory, or to off',
            ),
        ),
        'privjax_eval_workers_not_a_number': (
            'PRIVJAX_EVAL_WORKERS not a positive integer: how many evaluations run side by side',
            (
                'PRIVJAX_EVAL_WORKERS',
                lambda t: 'two',
                lambda c: runner.eval_workers(),
                'must be a positive integer',
            ),
        ),
    },
)


@pytest.mark.parametrize('name', list(ENVIRONMENT))
def test_a_bad_environment_variable_is_named(tfds_dir, tmp_path, monkeypatch, name):
  variable, make_value, job, message = ENVIRONMENT[name]
  value = make_value(str(tmp_path))
  monkeypatch.setenv(variable, value)
  config = make_config(tfds_dir)
  config.dataset.data_dir = ''
  with pytest.raises(Exception) as e:
    job(config)
  text = assert_one_line(e)
  assert f'{variable}' in text and value in text and message in text, text
  assert isinstance(e.value, _cli.KNOWN_ERRORS)


def test_a_damaged_frontier_json_is_rebuilt(evaluated, tfds_dir, tmp_path, capsys, monkeypatch):
  """frontier.json cut short, then the frontier resumed (here a frontier of the `none` run alone,
  trained and evaluated): one line says it was damaged and rebuilt; the new one is whole."""
  from privjax.experiments import frontier

  workdir = str(tmp_path / 'frontier')
  copy_run(evaluated, tmp_path / 'frontier', 'none')
  path = os.path.join(workdir, 'frontier.json')
  with open(path, 'w') as f:
    f.write('{"points": [')
  monkeypatch.setattr(frontier, 'plan', lambda base, defences, quick: [('none', 'none', None)])
  capsys.readouterr()
  result = frontier.run_frontier(workdir, lambda d: make_config(tfds_dir, ARG), eval_config())
  (line,) = [l for l in capsys.readouterr().out.splitlines() if 'damaged' in l]
  assert line.startswith(f'{path} was damaged (not JSON: '), line
  assert line.endswith("; rebuilt from the runs' reports"), line
  with open(path) as f:
    assert json.load(f)['points'] == json.loads(json.dumps(result['points'], default=float))
