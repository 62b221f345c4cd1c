"""The training loop: `train_and_evaluate(config, workdir)`.

Order of initialisation (as big_vision): the latest checkpoint in `workdir` (resume), else
`config.init_from` (another run's parameters, matched by layer name), else
`config.model.pretrained` (a torchvision or Keras VGG-16 weight file), else from scratch.
Batches are a pure function of (seed, step), so a resumed run sees the batches the uninterrupted
run would have. Data parallel over every device of every process: each process loads only the rows
of each global batch that its devices hold (see privjax.train.distributed).
Must not import privjax.attacks or privjax.report.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from privjax import config as config_lib
from privjax import models
from privjax.data import pipeline
from privjax.models import pretrained
from privjax.train import checkpoint as ckpt_lib
from privjax.train import distributed
from privjax.train import step as step_lib
from privjax.train.writer import MetricWriter

try:
  import tqdm
except ImportError:
  tqdm = None


class TrainingError(RuntimeError):
  """Training cannot go on (for example a NaN loss); the message says at which step."""


def data_mesh() -> jax.sharding.Mesh:
  # Auto axes: XLA propagates the batch sharding through the model (no per-op annotations needed).
  return jax.make_mesh((jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


def check_batch(batch_size: int, name: str = 'batch_size') -> None:
  n = jax.device_count()
  if batch_size % n:
    raise config_lib.ConfigError(
        f'{name}={batch_size} is not divisible by the {n} devices; use a multiple of {n}'
    )


def build_model(config, num_classes: int, seed: int):
  return models.model_from_config(config, num_classes, rngs=nnx.Rngs(seed))


def init_params_from_run(model, run_dir: str) -> tuple[list[str], list[str]]:
  """Loads another run's latest parameters into `model` layer by layer (any cut)."""
  _, params, _, _ = ckpt_lib.restore_run(run_dir)
  by_layer = {}
  for group in params.values():
    by_layer.update(group)
  loaded, skipped = models.load_layer_params(model, by_layer)
  if not loaded:
    raise ckpt_lib.RunError(
        f'init_from={run_dir}: no layer matches this model '
        f'(its layers: {", ".join(sorted(by_layer))})'
    )
  return loaded, skipped


def device_batches(host_batches, sharding, global_batch: int, size: int):
  """Host batches of this process's rows → global arrays, `size` of them in flight ahead."""
  return pipeline.prefetch_to_device(
      (distributed.host_to_global(b, sharding, global_batch) for b in host_batches), size, sharding
  )


def evaluate_primary(eval_step, params, split, config, sharding, label_key) -> dict[str, float]:
  correct = ce = count = 0.0
  n = config.eval_batch_size
  rows = distributed.process_rows(sharding, n)
  # Every process reads whole evaluation batches and keeps its rows: evaluation is small.
  batches = pipeline.eval_batches(
      split, n, pipeline.preprocess_from_config(config, train=False), threads=config.data_threads
  )
  for batch in device_batches((distributed.local_rows(b, rows) for b in batches), sharding, n, 2):
    c, e, n = eval_step(params, batch)
    correct, ce, count = correct + c, ce + e, count + n
  count = float(count)
  return {'test_accuracy': float(correct) / count, 'test_ce': float(ce) / count}


def calibrated_margin(distance_fn, params, batches, num_batches: int, scale: float) -> float:
  """scale x median distance of different-label pairs under the initial parameters."""
  diffs = []
  for _, batch in zip(range(num_batches), batches):
    d, same = jax.device_get(distance_fn(params, batch))
    diffs.append(d[same == 0])
  return float(scale * np.median(np.concatenate(diffs)))


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  config_lib.validate(config)
  multi_process = distributed.maybe_initialize(config)  # before anything touches a device
  check_batch(config.batch_size)
  check_batch(config.eval_batch_size, 'eval_batch_size')
  config_dict = config.to_dict()
  primary = config.dataset.primary

  # Everything that can be refused is checked before the workdir is touched.
  if multi_process:
    # Process 0 prepares a generated data set while the others wait: no race on its files.
    distributed.decide_on_first_process(
        lambda: bool(pipeline.get_builder(config.dataset)), 'open the data set'
    )
  builder = pipeline.get_builder(config.dataset)
  num_classes = pipeline.label_num_classes(builder, primary)
  pipeline.label_num_classes(builder, config.dataset.secret)
  train_split = pipeline.load_split(builder, config.dataset.train_split)
  test_split = pipeline.load_split(builder, config.dataset.test_split)
  train_pre = pipeline.preprocess_from_config(config, train=True)
  pipeline.check_image_size(train_split, train_pre)
  if config.init_from:
    ckpt_lib.restore_run(config.init_from)  # fails early on a missing or empty run
  weights = None
  if config.model.get('pretrained') and not config.init_from:
    weights = pretrained.check_config(config, num_classes)

  distributed.decide_on_first_process(
      lambda: ckpt_lib.prepare_workdir(workdir, config_dict), f'claim --workdir {workdir}'
  )
  checkpoints = ckpt_lib.Checkpoints(
      workdir, every=config.checkpoint_every, keep=config.keep_checkpoints
  )
  # A checkpoint, not config.json, decides: a run that died before its first checkpoint must
  # start again from init_from / pretrained weights, not from scratch.
  latest = checkpoints.latest_step()

  mesh = data_mesh()
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P('data'))

  model = build_model(config, num_classes, config.seed)
  if config.init_from and latest is None:
    loaded, skipped = init_params_from_run(model, config.init_from)
    if jax.process_index() == 0:
      print(
          f'init_from {config.init_from}: loaded {", ".join(loaded)}'
          + (f'; re-initialised {", ".join(skipped)}' if skipped else ''),
          flush=True,
      )
  elif weights is not None and latest is None:
    # init_from's run already started from these weights; a resumed run restores its checkpoint.
    pretrained.load_pretrained(model, weights, verbose=jax.process_index() == 0)
  graphdef, params = nnx.split(model, nnx.Param)
  params = nnx.to_pure_dict(params)
  tx, train_step, eval_step = step_lib.compiled_steps(
      graphdef,
      ml_collections.FrozenConfigDict(config.optimizer),
      ml_collections.FrozenConfigDict(config.contrastive),
      config.mode == 'siamese',
      primary,
      mesh,
  )
  state = step_lib.init_state(params, tx, config.contrastive.margin)

  if latest is not None:
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype, sharding=replicated),
        state,
    )
    state = checkpoints.restore_state(latest, abstract)
    logging.info('resumed %s at step %d', workdir, latest)
  state = jax.device_put(state, replicated)

  start = int(state['step'])
  total = config.total_steps

  rows = distributed.process_rows(data_sharding, config.batch_size)

  def batches_from(step):
    return device_batches(
        pipeline.pair_batches(
            train_split,
            primary,
            config.batch_size,
            train_pre,
            seed=config.seed,
            start_step=step,
            num_steps=max(total - step, 0),
            threads=config.data_threads,
            rows=rows,
        ),
        data_sharding,
        config.batch_size,
        2,
    )

  if config.contrastive.margin_mode == 'calibrated' and latest is None:
    distances = step_lib.make_pair_distance_fn(graphdef, normalize=config.contrastive.normalize)
    # Replicated outputs: every process can read them (a sharded array spans other hosts).
    distance_fn = jax.jit(
        lambda p, b: (distances(p, b), b['same']),
        in_shardings=(replicated, data_sharding),
        out_shardings=replicated,
    )
    # Calibration batches come from a separate stream so training batches are unchanged.
    calib = device_batches(
        pipeline.pair_batches(
            train_split,
            primary,
            config.batch_size,
            train_pre,
            seed=config.seed + 7919,
            num_steps=config.contrastive.calibration_batches,
            threads=config.data_threads,
            rows=rows,
        ),
        data_sharding,
        config.batch_size,
        1,
    )
    margin = calibrated_margin(
        distance_fn,
        state['params'],
        calib,
        config.contrastive.calibration_batches,
        config.contrastive.margin_scale,
    )
    state['margin'] = jax.device_put(np.float32(margin), replicated)
    logging.info('calibrated margin: %.4g', margin)

  writer = MetricWriter(workdir)
  result = {}
  # Other processes get no bar: even a disabled one prints the evaluation lines.
  bar = (
      tqdm.tqdm(
          total=total,
          initial=start,
          desc=f'{config.mode}',
          unit='step',
          dynamic_ncols=True,
          disable=not config.progress,
      )
      if tqdm and jax.process_index() == 0
      else None
  )
  pending, t_log, images_seen = [], time.perf_counter(), 0
  try:
    for step, batch in zip(range(start + 1, total + 1), batches_from(start)):
      state, metrics = train_step(state, batch)
      pending.append(metrics)
      images_seen += 2 * config.batch_size
      if bar:
        bar.update(1)
      if step % config.log_every == 0 or step == total:
        # One host transfer per logging interval: the step itself never waits on the host.
        summary = {
            k: float(v)
            for k, v in jax.device_get(
                jax.tree_util.tree_map(lambda *xs: jnp.mean(jnp.stack(xs)), *pending)
            ).items()
        }
        if not all(math.isfinite(summary[k]) for k in ('loss', 'ce', 'contrastive')):
          raise TrainingError(
              f'non-finite loss between steps {step - len(pending) + 1} and {step} '
              f'(loss={summary["loss"]}, ce={summary["ce"]}, contrastive='
              f'{summary["contrastive"]}); lower optimizer.lr or contrastive.weight'
          )
        now = time.perf_counter()
        summary['images_per_sec'] = images_seen / (now - t_log)
        summary['margin'] = float(state['margin'])
        pending, t_log, images_seen = [], now, 0
        writer.write(step, summary)
        result.update({f'train_{k}': v for k, v in summary.items()})
        if bar:
          bar.set_postfix(loss=f'{summary["loss"]:.3f}', acc=f'{summary["accuracy"]:.2f}')
      if step % config.eval_every == 0 or step == total:
        evaluation = evaluate_primary(
            eval_step, state['params'], test_split, config, data_sharding, primary
        )
        writer.write(step, evaluation)
        result.update(evaluation)
        if bar:
          bar.write(f'step {step}: test accuracy ({primary}) {evaluation["test_accuracy"]:.4f}')
        t_log = time.perf_counter()  # evaluation time is not training throughput
      checkpoints.save(step, state, config_dict, force=step == total)
  finally:
    if bar:
      bar.close()
    checkpoints.close()
    writer.close()
  result['step'] = int(state['step'])
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'final_metrics.json'), 'w') as f:
      json.dump(result, f, indent=2, sort_keys=True)
  return result
