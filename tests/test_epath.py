"""Workdirs on a non-local file system (`gs://`), and the run's hyperparameters in TensorBoard.

Which non-local file system: neither etils.epath nor orbax knows an in-memory scheme. epath 1.15
maps only gs://, s3://, az:// and hf:// to a backend (`epath.Path('memory://x')` is a KeyError),
and orbax 0.12 writes arrays through TensorStore with its GCS driver for gs:// and its local file
driver, which needs an absolute local path, for anything else. So the workdir here is a real
`gs://` URI, mocked at the layers below privjax:
  * epath: the gs:// backend is a local directory (`Bucket`), translated path by path; it refuses
    to append (object stores cannot) and records every path it was given;
  * orbax: TensorStore's GCS kvstore spec points at the same directory (`get_kvstore_for_gcs`), and
    the bucket has no hierarchical namespace (orbax would ask the GCS API).
So privjax and orbax run their gs:// code paths (orbax commits a checkpoint with a commit file,
not a rename) with nothing but URIs; a Python audit hook fails the test if any local file
operation is given a path made from the URI (`gs:` in it), and the working directory must stay
empty of `gs:` folders. Not covered: the consistency and latency of a real object store, gcsfs or
TF's gfile themselves, TensorStore's GCS driver, and a data dir on gs:// (TFDS reads it through
epath on its own; the data set here is local).
"""

import importlib.util
import json
import os
import shutil
import socket
import struct
import sys

import conftest
import faultlib
import jax
import numpy as np
import pytest
from etils.epath import backend as epath_backend
from etils.epath import gpath
from orbax.checkpoint._src.path import gcs_utils

from privjax import errors, export, paths
from privjax.train import checkpoint as ckpt_lib
from privjax.train import loop
from privjax.train import writer as writer_lib

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARG = conftest.TRAINED_RUN_ARG  # the reference run is the session's trained run
WORKDIR = 'gs://privjax-test-bucket/runs/r'
FS_EVENTS = (
    'open',
    'os.mkdir',
    'os.rename',
    'os.replace',
    'os.remove',
    'os.rmdir',
    'os.listdir',
    'os.scandir',
    'os.link',
    'os.truncate',
    'os.utime',
    'shutil.rmtree',
    'shutil.copyfile',
)
_LOCAL_FROM_URI = []  # (event, path) of local file operations given a path made from a URI
_WATCHING = [False]


def _audit(event, args):
  if _WATCHING[0] and event in FS_EVENTS:
    for arg in args:
      if isinstance(arg, (str, bytes, os.PathLike)) and 'gs:' in os.fsdecode(arg):
        _LOCAL_FROM_URI.append((event, os.fsdecode(arg)))


sys.addaudithook(_audit)
REAL_HNS_CHECK = gcs_utils.is_hierarchical_namespace_enabled


def _installed(module) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:
    return False


class Bucket:
  """An epath backend for gs:// URIs kept in local directory `root`."""

  def __init__(self, root):
    self.root, self.os = str(root), epath_backend.os_backend
    self.seen = []

  def local(self, path) -> str:
    path = os.fspath(path)
    assert path.startswith('gs://'), path
    self.seen.append(path)
    return os.path.join(self.root, path[len('gs://') :])

  def uri(self, local) -> str:
    return 'gs://' + os.path.relpath(os.fspath(local), self.root)

  def open(self, path, mode):
    if 'a' in mode:
      raise NotImplementedError(f'an object store cannot append: {path}')
    return self.os.open(self.local(path), mode)

  def exists(self, path):
    return self.os.exists(self.local(path))

  def isdir(self, path):
    return self.os.isdir(self.local(path))

  def listdir(self, path):
    return self.os.listdir(self.local(path))

  def glob(self, path):
    return [self.uri(p) for p in self.os.glob(self.local(path))]

  def walk(self, top, *, top_down=True, on_error=None):
    for d, dirs, files in self.os.walk(self.local(top), top_down=top_down, on_error=on_error):
      yield self.uri(d), dirs, files

  def makedirs(self, path, *, exist_ok=False, mode=None):
    self.os.makedirs(self.local(path), exist_ok=exist_ok, mode=mode)

  def mkdir(self, path, *, exist_ok=False, mode=None):
    self.os.mkdir(self.local(path), exist_ok=exist_ok, mode=mode)

  def rmtree(self, path):
    self.os.rmtree(self.local(path))

  def remove(self, path):
    self.os.remove(self.local(path))

  def rename(self, path, dst):
    self.os.rename(self.local(path), self.local(dst))

  def replace(self, path, dst):
    self.os.replace(self.local(path), self.local(dst))

  def copy(self, path, dst, *, overwrite):
    self.os.copy(self.local(path), self.local(dst), overwrite=overwrite)

  def stat(self, path):
    return self.os.stat(self.local(path))


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """gs:// served from tmp_path/bucket; the working directory is tmp_path/cwd (kept empty)."""
  fake = Bucket(tmp_path / 'bucket')
  os.makedirs(fake.root)
  monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, 'gs', fake)
  monkeypatch.setattr(gpath, '_is_tf_installed', lambda: False)
  monkeypatch.setattr(
      gcs_utils, 'get_kvstore_for_gcs', lambda path: {'driver': 'file', 'path': fake.local(path)}
  )
  monkeypatch.setattr(gcs_utils, 'is_hierarchical_namespace_enabled', lambda path: False)
  os.makedirs(tmp_path / 'cwd')
  monkeypatch.chdir(tmp_path / 'cwd')
  _LOCAL_FROM_URI.clear()
  _WATCHING[0] = True
  yield fake
  _WATCHING[0] = False
  assert not _LOCAL_FROM_URI, f'local file operations on paths made from a URI: {_LOCAL_FROM_URI}'
  assert os.listdir(tmp_path / 'cwd') == []
  made = [d for d, _, _ in os.walk(tmp_path) if 'gs:' in d]
  assert not made, made


def make_config(tfds_dir, arg=ARG):
  return conftest.tiny_config_for(tfds_dir, arg)


@pytest.fixture(scope='module')
def reference(trained_run):
  """(workdir, result) of an uninterrupted run in a local workdir: the session's (read only)."""
  return trained_run


def saved_steps(workdir) -> list[int]:
  checkpoints = ckpt_lib.Checkpoints(workdir, read_only=True)
  try:
    return sorted(checkpoints.all_steps())
  finally:
    checkpoints.close()


def files_under(directory) -> list[str]:
  return sorted(
      os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs
  )


def test_paths_keep_uris_and_make_local_paths_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert os.fspath(paths.absolute('gs://b/r')) == 'gs://b/r'
  assert os.fspath(paths.absolute('runs/r')) == str(tmp_path / 'runs' / 'r')
  assert paths.join('gs://b/r', 'checkpoints', '3') == 'gs://b/r/checkpoints/3'
  assert paths.join('runs/r', 'x') == os.path.join('runs/r', 'x')
  assert ckpt_lib.checkpoint_dir('gs://b/r') == 'gs://b/r/checkpoints'
  assert ckpt_lib.checkpoint_dir('r') == str(tmp_path / 'r' / 'checkpoints')
  assert paths.is_local('runs/r') and paths.is_local('/a/b') and not paths.is_local('s3://b/r')


def test_train_interrupt_resume_on_gs_matches_the_local_run(reference, tfds_dir, bucket):
  """A training into gs:// stopped after its step-3 checkpoint and its step-4 row, then resumed:
  parameters, final metrics and history equal the uninterrupted local run's; every file is in the
  bucket, and a rerun of the finished run writes nothing."""
  with faultlib.inject(faultlib.Fault(action='interrupt', **faultlib.AT_BATCH_6)):
    with pytest.raises(KeyboardInterrupt):
      loop.train_and_evaluate(make_config(tfds_dir), WORKDIR)
  run = os.path.join(bucket.root, 'privjax-test-bucket', 'runs', 'r')
  assert [r['step'] for r in writer_lib.read_rows(WORKDIR)] == [2, 3, 4]
  assert not os.path.exists(os.path.join(run, ckpt_lib.LOCK_FILE))  # released on the exception
  assert saved_steps(WORKDIR) == [1, 3]  # orbax saves the first step of a fresh run too

  result = loop.train_and_evaluate(make_config(tfds_dir), WORKDIR)

  ref_dir, ref_result = reference
  for key, value in ref_result.items():
    if key != 'train_images_per_sec':
      np.testing.assert_allclose(result[key], value, rtol=1e-5, err_msg=key)
  with open(os.path.join(run, loop.FINAL_METRICS)) as f:
    assert json.load(f) == result
  want, got = writer_lib.read_rows(ref_dir), writer_lib.read_rows(WORKDIR)
  assert [(r['step'], sorted(r)) for r in got] == [(r['step'], sorted(r)) for r in want]
  assert saved_steps(WORKDIR) == [3, 6]  # orbax deleted step 1 on gs:// (keep_checkpoints=2)
  step, params, _, config = ckpt_lib.restore_run(WORKDIR)
  assert step == 6 and config['dataset']['data_dir'] == tfds_dir
  jax.tree.map(
      lambda x, y: np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6),
      ckpt_lib.restore_run(ref_dir)[1],
      params,
  )
  names = files_under(run)
  assert ckpt_lib.CONFIG_FILE in names and 'metrics.jsonl' in names
  assert any(n.startswith('checkpoints/6/params/') for n in names)
  # orbax's gs:// commit: a commit file, not the local rename from a temporary folder
  assert 'checkpoints/6/commit_success.txt' in names
  assert any(n.startswith('tensorboard/events.out.tfevents.') for n in names)
  assert ckpt_lib.LOCK_FILE not in names
  # The resumed run's event file comes through epath too: both files hold scalars.
  assert all(_scalars(os.path.join(run, n)) for n in names if n.startswith('tensorboard/'))

  before = {n: os.stat(os.path.join(run, n)).st_mtime_ns for n in names}
  assert loop.train_and_evaluate(make_config(tfds_dir), WORKDIR) == result
  assert {n: os.stat(os.path.join(run, n)).st_mtime_ns for n in files_under(run)} == before
  assert any(p.startswith(WORKDIR + '/checkpoints/') for p in bucket.seen)  # orbax went through it


def test_a_broken_checkpoint_on_gs_is_set_aside_and_the_lock_works(reference, tfds_dir, bucket):
  """The fault handling on gs://: a truncated optimizer state in the latest checkpoint is moved to
  broken_checkpoints/ and the run resumes from the step before; a stale lock is taken over and a
  live one refused."""
  run = os.path.join(bucket.root, 'privjax-test-bucket', 'runs', 'r')
  os.makedirs(os.path.dirname(run))
  shutil.copytree(reference[0], run)
  opt = os.path.join(run, 'checkpoints', '6', 'opt_state')
  broken = max((os.path.join(d, f) for d, _, fs in os.walk(opt) for f in fs), key=os.path.getsize)
  with open(broken, 'r+b') as f:
    f.truncate(os.path.getsize(broken) // 2)
  with open(os.path.join(run, ckpt_lib.LOCK_FILE), 'w') as f:  # a killed run's lock
    json.dump({'host': 'x', 'pid': -1, 'started': 'then'}, f)
  with pytest.raises(errors.RunError, match='in use by another training .*delete the lock'):
    loop.train_and_evaluate(make_config(tfds_dir), WORKDIR)  # another host's: refused
  with open(os.path.join(run, ckpt_lib.LOCK_FILE), 'w') as f:  # a dead pid of this host
    json.dump({'host': socket.gethostname(), 'pid': 2**22 + 1, 'started': 'then'}, f)

  result = loop.train_and_evaluate(make_config(tfds_dir), WORKDIR)

  assert result['step'] == 6
  np.testing.assert_allclose(result['test_accuracy'], reference[1]['test_accuracy'], rtol=1e-5)
  moved = broken.replace(os.path.join('checkpoints', '6'), os.path.join('broken_checkpoints', '6'))
  assert os.path.exists(moved)
  assert saved_steps(WORKDIR) == [3, 6]
  assert not os.path.exists(os.path.join(run, ckpt_lib.LOCK_FILE))


def test_export_from_and_to_gs(reference, bucket):
  run = os.path.join(bucket.root, 'privjax-test-bucket', 'runs', 'r')
  os.makedirs(os.path.dirname(run))
  shutil.copytree(reference[0], run)
  out = 'gs://privjax-test-bucket/exports/e'
  manifest = export.export_extractor(WORKDIR, out)
  local_out = os.path.join(bucket.root, 'privjax-test-bucket', 'exports', 'e')
  assert sorted(os.listdir(local_out)) == sorted(export.OUR_FILES[:4])  # no TFLite
  assert manifest['run'] == 'r' and manifest['checkpoint_step'] == 6
  with pytest.raises(errors.ConfigError, match='is not empty: it holds another export'):
    export.export_extractor(WORKDIR, out)
  assert export.load_exported(local_out).manifest == manifest


def _events(path):
  """The Event protos of a TensorBoard event file (TFRecord framing)."""
  from tensorboardX.proto import event_pb2

  with open(path, 'rb') as f:
    data = f.read()
  events, offset = [], 0
  while offset < len(data):
    (length,) = struct.unpack('<Q', data[offset : offset + 8])
    events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
    offset += 12 + length + 4
  return events


def _scalars(path) -> dict[str, list[tuple[int, float]]]:
  found = {}
  for event in _events(path):
    for value in event.summary.value:
      if value.HasField('simple_value'):
        found.setdefault(value.tag, []).append((event.step, value.simple_value))
  return found


def test_tensorboard_lists_the_config_in_its_hparams_tab(reference, tfds_dir):
  """The run's own event file holds the hparams plugin's experiment (the compared metrics, which
  are scalars of that same file), the session start (the flattened config) and the session end."""
  from tensorboardX.proto import plugin_hparams_pb2

  workdir, result = reference
  tb = os.path.join(workdir, 'tensorboard')
  (name,) = os.listdir(tb)  # one run, no hparams sub-run
  plugin = {}
  for event in _events(os.path.join(tb, name)):
    for value in event.summary.value:
      if value.metadata.plugin_data.plugin_name == 'hparams':
        data = plugin_hparams_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        plugin[value.tag] = data
  assert set(plugin) == {
      '_hparams_/experiment',
      '_hparams_/session_start_info',
      '_hparams_/session_end_info',
  }
  metrics = [m.name.tag for m in plugin['_hparams_/experiment'].experiment.metric_infos]
  assert metrics == [f'train/{m}' for m in loop.HPARAM_METRICS]
  scalars = _scalars(os.path.join(tb, name))
  assert set(metrics) <= set(scalars) and all(t.startswith('train/') for t in scalars)
  assert scalars['train/test_accuracy'][-1] == (6, pytest.approx(result['test_accuracy'], rel=1e-6))

  config = make_config(tfds_dir).to_dict()
  hparams = plugin['_hparams_/session_start_info'].session_start_info.hparams
  assert hparams['optimizer.lr'].number_value == pytest.approx(config['optimizer']['lr'])
  assert hparams['total_steps'].number_value == 6
  assert hparams['defence.name'].string_value == 'none'
  assert hparams['model.cut'].string_value == config['model']['cut']
  assert hparams['progress'].bool_value is False
  assert hparams['dataset.data_dir'].string_value == tfds_dir
  infos = {h.name for h in plugin['_hparams_/experiment'].experiment.hparam_infos}
  # The run's config as saved, less the stamp of the privjax that wrote it: the config above, plus
  # the data set's digest that training records.
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  assert hparams['dataset.digest'].string_value == saved['dataset']['digest']
  for key in ckpt_lib.run_stamp():
    del saved[key]
  assert infos == set(hparams) == set(writer_lib.flat_hparams(saved))
  end = plugin['_hparams_/session_end_info'].session_end_info
  assert end.status == 1  # STATUS_SUCCESS


@pytest.mark.skipif(
    _installed('gcsfs') or _installed('tensorflow'), reason='gs:// would reach the network'
)
def test_gs_without_a_gcs_backend_is_a_one_line_error(tfds_dir, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for attempt, where in (
      (lambda: loop.train_and_evaluate(make_config(tfds_dir), 'gs://b/r'), '--workdir gs://b/r'),
      (lambda: ckpt_lib.restore_run('gs://b/r'), 'run directory gs://b/r'),
  ):
    with pytest.raises(errors.RunError, match=f'^cannot reach {where}: .*gcsfs') as e:
      attempt()
    assert '\n' not in str(e.value)
  assert os.listdir(tmp_path) == []


@pytest.mark.skipif(_installed('google.cloud.storage'), reason='orbax would reach the network')
def test_orbax_on_gs_without_the_gcs_client_is_a_one_line_error(bucket, monkeypatch):
  monkeypatch.setattr(gcs_utils, 'is_hierarchical_namespace_enabled', REAL_HNS_CHECK)
  with pytest.raises(errors.RunError, match='needs google-cloud-storage for gs://') as e:
    ckpt_lib.Checkpoints(WORKDIR)
  assert str(e.value).startswith(f'cannot open the checkpoints {WORKDIR}/checkpoints: ')
  assert '\n' not in str(e.value)


@pytest.mark.filterwarnings('ignore:No artists with labels:UserWarning')  # no rank_privacy panel
def test_frontier_trains_evaluates_and_reports_on_gs(tfds_dir, bucket, tmp_path):
  """train → eval → report with every directory on gs://: the frontier job (--quick, one defence)
  trains `none` and `nopeek_1` (fine-tuned from gs://.../none), evaluates both with the tiny eval
  config (feature and PCA caches, the inversion grid, TensorBoard reading the grid back, the
  reference run on gs://) and renders frontier.json/md/png; a rerun reuses every report,
  and the reports load back from gs://. The bucket fixture asserts that no local path was made from
  the URI."""
  import privjax
  from privjax.experiments import frontier, runner
  from privjax.report import frontier_report

  def config_for(defence):
    return make_config(tfds_dir, defence + ',tiny')

  eval_config = frontier.load_eval_config(os.path.join(ROOT, 'configs/eval/default.py:tiny'), True)
  # Cut to the evaluators that write or read files (and those the frontier's points need), at one
  # setting: the time goes to jit compilations. The inversion writes its PNG grid (TensorBoard reads
  # it back) and inverts through the PCA that the sweep fitted and cached (read back from gs://).
  # The decoder's grid (reconstruction.png, privjax.attacks.reconstruction) is left out: the same
  # epath write, and 40% of the time.
  eval_config.evaluators = ('head', 'attackers', 'inversion')  # the frontier adds reference_run
  eval_config.attacker_families = ('linear',)
  eval_config.transforms = ('pca:4',)  # the only setting, so the baseline: inversion runs there
  eval_config.noise_variances = (0.0,)
  workdir = 'gs://privjax-test-bucket/frontier'
  result = frontier.run_frontier(workdir, config_for, eval_config, defences=['nopeek'], quick=True)

  local = os.path.join(bucket.root, 'privjax-test-bucket', 'frontier')
  names = files_under(local)
  for run in ('none', 'nopeek_1'):
    assert f'{run}/config.json' in names and f'{run}/{runner.TIMING}' in names
    (step,) = {n.split('/')[3] for n in names if n.startswith(f'{run}/eval/default/step_')}
    for name in ('report.json', 'report.md', 'privacy_accuracy.png', 'reconstructions.png'):
      assert f'{run}/eval/default/{step}/{name}' in names, (run, name)
    cache = [n for n in names if n.startswith(f'{run}/eval/cache/step_')]
    assert {n.rsplit('/', 1)[1] for n in cache} >= {
        'train.npz',
        'attacker_train.npz',
        'attacker_test.npz',
        'pca_4.npz',  # the PCA fitted once and read back by the inversion evaluator
    }
    (event,) = [n for n in names if n.startswith(f'{run}/eval/default/{step}/tensorboard/events.')]
    values = [v for e in _events(os.path.join(local, event)) for v in e.summary.value]
    images = {v.tag for v in values if v.HasField('image')}
    assert len(images) == 1 and images.pop().startswith('eval/images/inversion')
    assert any(v.tag.startswith('eval/pca_4/0/') for v in values if v.HasField('simple_value'))
  # A run: its default evaluation at its latest step, eval/default/step_<S>/report.json.
  report = privjax.load_report(f'{workdir}/nopeek_1')
  with open(os.path.join(local, 'nopeek_1', 'eval', 'default', step, 'report.json')) as f:
    assert report == json.load(f)
  assert report['workdir'] == f'{workdir}/nopeek_1'  # the URI, not <cwd>/gs:/...
  assert report['details']['reference_run']['once']['workdir'] == f'{workdir}/none'
  assert report['train_config']['init_from'] == f'{workdir}/none'
  with open(os.path.join(local, 'frontier.json')) as f:
    assert json.load(f)['points'] == json.loads(json.dumps(result['points']))
  assert {p['run'] for p in result['points']} == {'none', 'nopeek_1'}
  with open(os.path.join(local, 'frontier.md')) as f:
    assert f.read() == frontier_report.markdown(result)
  # The PNG written through epath is the one matplotlib writes to a local file.
  frontier_report.plot(result, str(tmp_path / 'frontier.png'))
  with (
      open(os.path.join(local, 'frontier.png'), 'rb') as a,
      open(tmp_path / 'frontier.png', 'rb') as b,
  ):
    assert a.read() == b.read()

  stamps = {n: os.stat(os.path.join(local, n)).st_mtime_ns for n in names if 'report' in n}
  again = frontier.run_frontier(workdir, config_for, eval_config, defences=['nopeek'], quick=True)
  assert again['points'] == result['points']
  assert {n: os.stat(os.path.join(local, n)).st_mtime_ns for n in stamps} == stamps
