"""The training loop: `train_and_evaluate(config, workdir)`.

Order of initialisation (as big_vision): the latest checkpoint in `workdir` (resume), else
`config.init_from` (another run's parameters, matched by layer name), else
`config.model.pretrained` (a torchvision or Keras VGG-16 weight file), else from scratch.
Batches are a pure function of (seed, step), so a resumed run sees the batches the uninterrupted
run would have. Data parallel over every device of every process: each process loads only the rows
of each global batch that its devices hold (see privjax.train.distributed).

Faults: the workdir is locked while a training runs in it (train.lock; a second training is refused,
the lock of a killed one is taken over). A resume restores the newest checkpoint that restores
(privjax.train.checkpoint sets a broken newer one aside), drops the rows the killed run logged
after it from metrics.jsonl, and carries the running means of the logging interval the checkpoint
cut in two (saved in its meta), so the history equals the uninterrupted run's. A resume on data
whose content digest differs from the one config.json recorded is refused in one line
(privjax.data.pipeline.check_run_data) unless dataset.allow_new_data. A run whose training is over
returns its result again without writing (final_metrics.json is rebuilt from metrics.jsonl when a
kill after the last checkpoint left none). Ctrl-C stops it as `errors.Interrupted`, whose message
names the last step trained (the checkpoint in flight is finished first, the lock released).
The workdir may be a URI (`gs://bucket/run`): every file goes through etils.epath
(privjax.paths; the train lock is best effort on an object store). TensorBoard gets the scalars and,
for its HPARAMS tab, the config (privjax.train.writer).
Must not import privjax.attacks or privjax.report.
"""

from __future__ import annotations

import json
import logging
import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from privjax import config as config_lib
from privjax import defences, models, paths
from privjax.data import pipeline
from privjax.errors import ConfigError, DataError, Interrupted, RunError, TrainingError
from privjax.models import pretrained
from privjax.train import checkpoint as ckpt_lib
from privjax.train import distributed
from privjax.train import step as step_lib
from privjax.train import writer as writer_lib
from privjax.train.writer import MetricWriter

try:
  from tqdm import auto as tqdm  # a notebook widget in Jupyter/Colab, a text bar elsewhere
except ImportError:
  tqdm = None

FINAL_METRICS = 'final_metrics.json'
# The metrics TensorBoard's HPARAMS tab compares runs by (tags the loop writes).
HPARAM_METRICS = ('test_accuracy', 'test_ce', 'loss', 'accuracy')


def data_mesh() -> jax.sharding.Mesh:
  # Auto axes: XLA propagates the batch sharding through the model (no per-op annotations needed).
  return jax.make_mesh((jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


def check_batch(batch_size: int, name: str = 'batch_size') -> None:
  n = jax.device_count()
  if batch_size % n:
    raise ConfigError(
        f'{name}={batch_size} is not divisible by the {n} devices; use a multiple of {n}'
    )


def build_model(config, num_classes: int, context, seed: int):
  """(model with the defence's device layers, defence) for a run of `config`."""
  return defences.model_from_config(config, num_classes, context, rngs=nnx.Rngs(seed))


def init_params_from_run(model, run_dir: str) -> tuple[list[str], list[str]]:
  """Loads another run's latest parameters into `model` layer by layer (any cut)."""
  _, params, _, _ = ckpt_lib.restore_run(run_dir)
  by_layer = {}
  for group in params.values():
    by_layer.update(group)
  loaded, skipped = models.load_layer_params(model, by_layer)
  if not loaded:
    raise RunError(
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
  # A fixed key per batch: learned noise draws the same on every evaluation of a run.
  key = jax.random.key(config.seed + 1)
  local = (distributed.local_rows(b, rows) for b in batches)
  for i, batch in enumerate(device_batches(local, sharding, n, 2)):
    c, e, n = eval_step(params, batch, jax.random.fold_in(key, i))
    correct, ce, count = correct + c, ce + e, count + n
  count = float(count)
  return {'test_accuracy': float(correct) / count, 'test_ce': float(ce) / count}


def _abstract_batch(config, defence) -> dict:
  """The shapes of one pair batch, to ask a defence whether it calibrates without running it."""
  b, s = config.batch_size, config.model.image_size
  batch = {
      'image': jax.ShapeDtypeStruct((b, 2, s, s, 3), jnp.uint8),
      'label': jax.ShapeDtypeStruct((b, 2), jnp.int32),
      'same': jax.ShapeDtypeStruct((b,), jnp.float32),
  }
  batch.update({k: jax.ShapeDtypeStruct((b, 2), jnp.int32) for k in defence.labels})
  return batch


def check_defence_labels(defence, builder) -> None:
  """A defence that needs a label the data set lacks is refused before anything is written."""
  for label in defence.labels:
    try:
      pipeline.label_num_classes(builder, label)
    except DataError as e:
      raise ConfigError(f'defence {defence.name} needs label {label!r}: {e}') from None


def _read_final(workdir: str) -> dict | None:
  try:
    result = json.loads((paths.as_path(workdir) / FINAL_METRICS).read_text())
  except (OSError, ValueError):
    return None
  return result if isinstance(result, dict) else None


def _write_final(workdir: str, result: dict) -> None:
  """final_metrics.json on process 0, atomically, and only when it would change."""
  if jax.process_index() != 0 or _read_final(workdir) == result:
    return
  paths.write_atomic(
      paths.join(workdir, FINAL_METRICS), json.dumps(result, indent=2, sort_keys=True)
  )


def _finished_result(workdir: str, step: int) -> dict | None:
  """The result of a run whose training is over at checkpoint `step`: its final_metrics.json when
  that is complete, else rebuilt from metrics.jsonl (a run killed after its last checkpoint, before
  final_metrics.json); None when the history has no evaluation at `step` either."""
  final = _read_final(workdir)
  if final and final.get('step') == step and 'test_accuracy' in final:
    return final
  return writer_lib.result_at(writer_lib.read_rows(workdir), step)


def train_and_evaluate(config, workdir: str) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming its latest intact checkpoint) and evaluates it.

  Returns, and writes to final_metrics.json, the last training metrics (prefixed 'train_'), the
  last evaluation and the step. A run whose training is already over (a rerun, or one killed after
  its last checkpoint) trains nothing and returns its result again; final_metrics.json is then left
  as it is, or rebuilt from metrics.jsonl (the evaluation is run again only if that lacks it). The
  workdir is locked while training (`checkpoint.WorkdirLock`): a second training is refused.
  """
  config = config.copy_and_resolve_references()
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
  context = defences.context_for(config, pipeline.label_classes(builder))
  defence = defences.from_config(config.defence, context)
  check_defence_labels(defence, builder)
  if config.init_from:
    ckpt_lib.restore_run(config.init_from)  # fails early on a missing or empty run
  # A resumed run must see the data it was trained on (dataset.allow_new_data: on purpose); the
  # workdir's own refusals (another experiment there) come first.
  recorded = ckpt_lib.read_config(workdir) if ckpt_lib.check_workdir(workdir, config_dict) else None
  config_dict['dataset']['digest'] = pipeline.check_run_data(
      recorded,
      builder,
      run=workdir,
      action='resume',
      allow_new_data=config.dataset.get('allow_new_data', False),
  )
  weights = None
  if config.model.get('pretrained') and not config.init_from:
    weights = pretrained.check_config(config, num_classes)

  locks = []

  def claim() -> bool:
    resume, lock = ckpt_lib.claim_workdir(workdir, config_dict)
    locks.append(lock)
    return resume

  distributed.decide_on_first_process(claim, f'claim --workdir {workdir}')
  try:
    if (
        recorded is not None
        and recorded['dataset'].get('digest') != config_dict['dataset']['digest']
    ):
      ckpt_lib.update_config(workdir, 'dataset.digest', config_dict['dataset']['digest'])
    checkpoints = ckpt_lib.Checkpoints(
        workdir, every=config.checkpoint_every, keep=config.keep_checkpoints
    )
    try:
      return _train(
          config,
          workdir,
          config_dict,
          checkpoints,
          num_classes=num_classes,
          context=context,
          train_split=train_split,
          test_split=test_split,
          train_pre=train_pre,
          weights=weights,
      )
    finally:
      checkpoints.close()  # waits for the last save
  finally:
    for lock in locks:
      lock.release()


def _train(
    config,
    workdir,
    config_dict,
    checkpoints,
    *,
    num_classes,
    context,
    train_split,
    test_split,
    train_pre,
    weights,
) -> dict[str, float]:
  """train_and_evaluate after the checks, with the workdir claimed and locked."""
  primary = config.dataset.primary
  total = config.total_steps
  # A checkpoint, not config.json, decides: a run that died before its first checkpoint must
  # start again from init_from / pretrained weights, not from scratch.
  latest = checkpoints.latest_step()

  mesh = data_mesh()
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P('data'))

  model, _ = build_model(config, num_classes, context, config.seed)
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
  tx, defence, train_step, eval_step = step_lib.compiled_steps(
      graphdef,
      ml_collections.FrozenConfigDict(config.optimizer),
      ml_collections.FrozenConfigDict(config.defence),
      context,
      config.seed,
      primary,
      mesh,
  )
  defence_key = jax.random.fold_in(jax.random.key(config.seed), 2**31 - 1)
  state = step_lib.init_state(params, tx, defence.init_state(defence_key))

  # The metrics of the logging interval a checkpoint cut in two: (means, steps), saved in the
  # checkpoint's meta, so the first row after a resume averages what the uninterrupted run's did.
  carry = None
  if latest is not None:
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype, sharding=replicated),
        state,
    )
    latest, state, meta, broken = checkpoints.restore_latest_state(abstract)
    if broken:
      moved = checkpoints.set_aside(broken)
      if moved:
        logging.warning('moved the checkpoints that cannot be restored to %s', ', '.join(moved))
    if latest >= total:
      finished = _finished_result(workdir, latest)
      if finished is not None:  # nothing to train or evaluate: nothing is written but the summary
        _write_final(workdir, finished)
        logging.info('%s: training is over at step %d', workdir, latest)
        return finished
    if meta.get('window_steps'):
      carry = (dict(meta['window_metrics']), int(meta['window_steps']))
    logging.info('resumed %s at step %d', workdir, latest)
  state = jax.device_put(state, replicated)

  start = int(state['step'])
  history = [r for r in writer_lib.read_rows(workdir) if r['step'] <= start]

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
            workers=config.get('data_workers', 0),
            rows=rows,
            extra_labels=defence.labels,
        ),
        data_sharding,
        config.batch_size,
        2,
    )

  calibration = step_lib.make_calibration_fn(graphdef, defence)
  if latest is None and jax.eval_shape(calibration, params, _abstract_batch(config, defence)):
    # Replicated outputs: every process can read them (a sharded array spans other hosts).
    calibration_fn = jax.jit(
        calibration, in_shardings=(replicated, data_sharding), out_shardings=replicated
    )
    # Calibration batches come from a separate stream so training batches are unchanged.
    calib = device_batches(
        pipeline.pair_batches(
            train_split,
            primary,
            config.batch_size,
            train_pre,
            seed=config.seed + 7919,
            num_steps=config.defence.calibration_batches,
            threads=config.data_threads,
            rows=rows,
            extra_labels=defence.labels,
        ),
        data_sharding,
        config.batch_size,
        1,
    )
    outputs = [jax.device_get(calibration_fn(state['params'], b)) for b in calib]
    state['defence'] = jax.device_put(defence.calibrate(state['defence'], outputs), replicated)
    logging.info('calibrated %s: %s', defence.name, defence.summary(state['defence']))

  # Rows after `start` (logged by a run killed after this checkpoint) are dropped first.
  writer = MetricWriter(workdir, resume_step=start)
  writer.write_hparams(config_dict, HPARAM_METRICS)
  result = {}
  # Other processes get no bar: even a disabled one prints the evaluation lines.
  bar = (
      tqdm.tqdm(
          total=total,
          initial=start,
          desc=defence.name,
          unit='step',
          dynamic_ncols=True,
          disable=not config.progress,
      )
      if tqdm and jax.process_index() == 0
      else None
  )
  pending, t_log, images_seen = [], time.perf_counter(), 0
  done = start  # the last step trained, for the line a Ctrl-C prints

  def window() -> tuple[dict[str, float], int]:
    """The means of the metrics since the last logged row, and over how many steps."""
    means = {
        k: float(v)
        for k, v in jax.device_get(
            jax.tree_util.tree_map(lambda *xs: jnp.mean(jnp.stack(xs)), *pending)
        ).items()
    }
    if carry is None or set(carry[0]) != set(means):
      return means, len(pending)
    (old, n_old), n = carry, len(pending)
    return {k: (v * n + old[k] * n_old) / (n + n_old) for k, v in means.items()}, n + n_old

  def checkpoint_meta() -> dict:
    meta = {'defence': defence.summary(jax.device_get(state['defence']))}
    if pending:
      meta['window_metrics'], meta['window_steps'] = window()
    return meta

  try:
    for step, batch in zip(range(start + 1, total + 1), batches_from(start)):
      state, metrics = train_step(state, batch)
      pending.append(metrics)
      images_seen += 2 * config.batch_size
      if bar:
        bar.update(1)
      if step % config.log_every == 0 or step == total:
        # One host transfer per logging interval: the step itself never waits on the host.
        summary, steps = window()
        if not all(math.isfinite(v) for v in summary.values()):
          bad = ', '.join(f'{k}={v}' for k, v in summary.items() if not math.isfinite(v))
          raise TrainingError(
              f'non-finite loss between steps {step - steps + 1} and {step} ({bad}); '
              f'lower optimizer.lr or the weight of defence {defence.name}'
          )
        now = time.perf_counter()
        # After a resume the first interval's throughput counts the steps since the resume only.
        summary['images_per_sec'] = images_seen / (now - t_log)
        summary.update(defence.summary(jax.device_get(state['defence'])))
        pending, carry, t_log, images_seen = [], None, now, 0
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
      checkpoints.save(step, state, config_dict, force=step == total, meta_fn=checkpoint_meta)
      done = step
    if start >= total:
      # Training was over but its history lacks the last evaluation: run it again.
      evaluation = evaluate_primary(
          eval_step, state['params'], test_split, config, data_sharding, primary
      )
      writer.write(start, evaluation)
      result = writer_lib.result_at(history + [{'step': start, **evaluation}], start)
    writer.write_session_end()
  except KeyboardInterrupt:
    raise Interrupted(
        f'training interrupted at step {done}; rerun the same command to resume'
    ) from None
  finally:
    if bar:
      bar.close()
    checkpoints.close()
    writer.close()
  result['step'] = int(state['step'])
  _write_final(workdir, result)
  return result
