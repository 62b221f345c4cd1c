"""The training pipeline with grain worker processes: the same batches as without, loaded ahead."""

import dataclasses
import os
import time

import numpy as np
import pytest

from privjax.data import pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def split(tfds_dir):
  from privjax.data import synthetic_faces

  return pipeline.load_split(synthetic_faces.build('tiny', data_dir=tfds_dir), 'train')


PRE = pipeline.Preprocess(size=32, resize=True, center_crop=1.0, flip=True, random_crop=0.8)


@dataclasses.dataclass(frozen=True)
class _Marking:
  """Preprocess that leaves a file per image it loads, seen from any process."""

  inner: pipeline.Preprocess
  folder: str

  def __call__(self, image, rng):
    out = self.inner(image, rng)
    open(os.path.join(self.folder, f'{os.getpid()}-{time.monotonic_ns()}'), 'w').close()
    return out


@pytest.mark.parametrize('workers', [0, 3])
def test_batches_are_the_same_with_workers_and_loaded_before_they_are_asked_for(
    split, tmp_path, workers
):
  kw = dict(seed=3, start_step=1, num_steps=7, extra_labels=('identity',))
  reference = list(pipeline.pair_batches(split, 'gender', 4, PRE, threads=2, **kw))
  marking = _Marking(PRE, str(tmp_path))
  it = pipeline.pair_batches(split, 'gender', 4, marking, threads=1, workers=workers, **kw)
  batches = [next(it)]  # one batch taken, as the training step takes it
  # Without a consumer, the pipeline keeps loading: at least two more batches (2 images per pair,
  # 4 pairs) appear. Polled, not timed: a pipeline that loads only on demand never gets there.
  wanted = 3 * 4 * 2
  deadline = time.monotonic() + 300
  while len(os.listdir(tmp_path)) < wanted and time.monotonic() < deadline:
    time.sleep(0.05)
  assert len(os.listdir(tmp_path)) >= wanted
  loaders = {name.split('-')[0] for name in os.listdir(tmp_path)}
  # Worker processes load in their own processes; threads in this one.
  if workers:
    assert str(os.getpid()) not in loaders
  else:
    assert loaders == {str(os.getpid())}
  batches += list(it)

  # 7 batches over 3 workers: the last worker's share is shorter, the order still the same.
  assert len(batches) == len(reference) == 7
  for a, b in zip(reference, batches):
    assert a.keys() == b.keys() == {'image', 'label', 'same', 'identity'}
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  # The batches differ from step to step and the augmentation ran (flip and crop draw per pair):
  # equality above is not equality of constants.
  assert not np.array_equal(reference[0]['image'], reference[1]['image'])
  assert reference[0]['image'].shape == (4, 2, 32, 32, 3)
  np.testing.assert_array_equal(reference[0]['same'], [1, 0, 1, 0])


def test_training_passes_config_data_workers_to_the_pipeline(tiny_config, tmp_path, monkeypatch):
  """`config.data_workers` reaches `pair_batches(workers=...)` for the training batches (the
  batches themselves are the same with workers: the test above). Stopped at the first batch."""
  from privjax.train import loop

  seen = []
  real = pipeline.pair_batches

  class Stop(Exception):
    pass

  def recording(*args, **kwargs):
    seen.append(kwargs.get('workers'))
    for batch in real(*args, **kwargs):
      raise Stop('stop after the first batch')
      yield batch

  monkeypatch.setattr(pipeline, 'pair_batches', recording)
  config = tiny_config('none,tiny')
  assert config.data_workers == 0  # the default: threads in this process, as before
  config.data_workers = 2
  with pytest.raises(Stop, match='first batch'):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert seen and seen[0] == 2, seen
