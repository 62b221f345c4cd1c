"""The jit-compiled training and evaluation steps, and the optimizer.

What lives here: `make_optimizer` (Adam with the head at a multiple of the extractor's rate, via
`optax.partition`; a defence's device layers at their own rate), `make_train_step` (the primary
loss on one batch of 2B images plus whatever the defence returns, then the defence's own update),
`make_eval_step`, and `compiled_steps` (both jitted for a data-parallel mesh). State is a plain dict
{'params', 'opt_state', 'step', 'defence'}; the model is rebuilt from its graphdef inside the traced
function (jax.jit over nnx.split/merge state). Random numbers (dropout, learned noise) come from
`fold_in(key(seed), step)`, so a resumed run draws what the uninterrupted run drew.
Must not import privjax.data or do any I/O; names no particular defence.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from privjax import config as config_lib
from privjax import defences as defences_lib
from privjax import objectives
from privjax.errors import ConfigError


def _group_labels(device_layers: tuple[str, ...]):
  def labels(params):
    out = {}
    for group, tree in params.items():
      out[group] = {
          layer: jax.tree_util.tree_map(
              lambda _, g=(
                  'device' if group == 'extractor' and layer in device_layers else group
              ): g,
              sub,
          )
          for layer, sub in tree.items()
      }
    return out

  return labels


def learning_rate(opt_cfg, lr: float):
  """`lr`, or a warm-up then cosine decay to 0 over `decay_steps` (optimizer.schedule='cosine')."""
  schedule = opt_cfg.get('schedule', 'constant')
  if schedule == 'constant':
    return lr
  if schedule != 'cosine' or opt_cfg.decay_steps <= opt_cfg.warmup_steps:
    # config.validate refuses both; this guards the callers that build an optimizer directly.
    raise ConfigError(
        f'optimizer.schedule={schedule!r} with warmup_steps={opt_cfg.warmup_steps}, '
        f'decay_steps={opt_cfg.decay_steps}: choose {" or ".join(config_lib.SCHEDULES)}, and '
        'for cosine decay_steps > warmup_steps'
    )
  return optax.warmup_cosine_decay_schedule(0.0, lr, opt_cfg.warmup_steps, opt_cfg.decay_steps)


def make_optimizer(opt_cfg, device_layers: tuple[str, ...] = (), device_lr: float | None = None):
  def adam(lr):
    lr = learning_rate(opt_cfg, lr)
    if opt_cfg.get('weight_decay', 0.0):
      return optax.adamw(lr, b1=opt_cfg.b1, b2=opt_cfg.b2, weight_decay=opt_cfg.weight_decay)
    return optax.adam(lr, b1=opt_cfg.b1, b2=opt_cfg.b2)

  groups = {'extractor': adam(opt_cfg.lr), 'head': adam(opt_cfg.lr * opt_cfg.head_lr_mult)}
  if device_layers:
    groups['device'] = adam(opt_cfg.lr if device_lr is None else device_lr)
  return optax.partition(groups, _group_labels(tuple(device_layers)))


def defence_optimizer(opt_cfg, defence) -> optax.GradientTransformation:
  """`make_optimizer` with the defence's device layers at the defence's rate."""
  device_layers = tuple(name for name, _ in defence.device_layers(nnx.Rngs(0)))
  return make_optimizer(opt_cfg, device_layers, defence.device_lr())


def _flat_pairs(batch):
  """[B,2,...] pair rows → one batch of 2B examples (a0, b0, a1, b1, ...), every label too."""
  # The loader's contract, checked where the step takes it (at trace time, so free when jitted).
  chex.assert_rank(batch['image'], 5)  # [B, 2, S, S, 3]
  chex.assert_equal_shape_prefix([v for k, v in batch.items() if k != 'same'], 2)
  chex.assert_shape(batch['same'], batch['image'].shape[:1])
  flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items() if k != 'same'}
  flat['same'] = batch['same']
  return flat


def pair_statistics(features, same):
  """The metrics users read a margin against: mean feature norm, mean same/different distance."""
  f = features.reshape((features.shape[0] // 2, 2, -1))
  d2 = objectives.pair_distances_squared(f[:, 0], f[:, 1])
  d = jnp.sqrt(jnp.maximum(d2, 0.0))
  same = same.astype(jnp.float32)
  return {
      'feature_norm': jnp.linalg.norm(f.astype(jnp.float32), axis=-1).mean(),
      'dist_same': (d * same).sum() / jnp.maximum(same.sum(), 1.0),
      'dist_diff': (d * (1 - same)).sum() / jnp.maximum((1 - same).sum(), 1.0),
  }


def step_key(seed: int, step):
  return jax.random.fold_in(jax.random.key(seed), step)


def make_train_step(graphdef, tx, defence, *, seed: int = 0):
  """(state, pair batch) → (state, metrics): loss = CE(a) + CE(b) + the defence's terms."""

  def loss_fn(params, batch, defence_state, rng):
    model = nnx.merge(graphdef, params)
    k_model, k_defence = jax.random.split(rng)
    reports = {}
    features, logits = model.features_and_logits(
        batch['image'], rng=k_model, train=True, reports=reports
    )
    ce = objectives.cross_entropy(logits, batch['label'])
    term, defence_metrics = defence.loss(defence_state, features, batch, k_defence, params)
    layer_term, layer_metrics = defence.layer_loss(defence_state, reports, batch)
    term = term + layer_term
    defence_metrics = dict(defence_metrics, **layer_metrics)
    # CE(a) + CE(b): each branch's mean cross-entropy, summed (= 2 x the mean over 2B images).
    loss = 2.0 * ce + term
    accuracy = (jnp.argmax(logits, -1) == batch['label']).mean()
    metrics = dict(pair_statistics(features, batch['same']), **defence_metrics)
    metrics.update(loss=loss, ce=ce, accuracy=accuracy)
    return loss, (metrics, jax.lax.stop_gradient(features))

  def train_step(state, batch):
    batch = _flat_pairs(batch)
    rng = step_key(seed, state['step'])
    k_loss, k_update = jax.random.split(rng)
    grads, (metrics, features) = jax.grad(loss_fn, has_aux=True)(
        state['params'], batch, state['defence'], k_loss
    )
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    defence_state, defence_metrics = defence.update(state['defence'], features, batch, k_update)
    metrics.update(defence_metrics)
    metrics['grad_norm'] = optax.tree.norm(grads)
    new_state = dict(
        state, params=params, opt_state=opt_state, step=state['step'] + 1, defence=defence_state
    )
    return new_state, metrics

  return train_step


def make_calibration_fn(graphdef, defence):
  """params, pair batch → the defence's calibration output (e.g. pair distances for a margin)."""

  def calibration(params, batch):
    batch = _flat_pairs(batch)
    features = nnx.merge(graphdef, params).extractor(batch['image'], rng=jax.random.key(0))
    return defence.calibration_output(features, batch)

  return calibration


def init_state(params, tx, defence_state) -> dict:
  """The training state the step takes and returns: parameters, optimizer state, step, defence."""
  return {
      'params': params,
      'opt_state': tx.init(params),
      'step': np.int32(0),
      'defence': defence_state,
  }


def make_eval_step(graphdef, label_key: str):
  """params, padded batch, key → (number correct, summed CE, number of real examples)."""

  def eval_step(params, batch, rng):
    logits = nnx.merge(graphdef, params)(batch['image'], rng=rng).astype(jnp.float32)
    labels = batch[label_key]
    mask = batch['mask'].astype(jnp.float32)
    correct = ((jnp.argmax(logits, -1) == labels) * mask).sum()
    ce = (optax.softmax_cross_entropy_with_integer_labels(logits, labels) * mask).sum()
    return correct, ce, mask.sum()

  return eval_step


# XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK by default; with its Eigen kernels instead,
# the training step ran ~20% faster for vgg_mini and vgg16 on a 2-core x86 machine
# (benchmarks/train_step.py).
_CPU_COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}


@functools.lru_cache(maxsize=None)
def compiler_options(platform: str) -> dict | None:
  """XLA options for jitted model code on `platform`: None if none apply or jaxlib lacks them."""
  if platform != 'cpu':
    return None
  try:
    jax.jit(lambda x: x + 1).lower(np.float32(0)).compile(compiler_options=_CPU_COMPILER_OPTIONS)
  except Exception:  # an unknown option name in another jaxlib: keep its defaults
    return None
  return dict(_CPU_COMPILER_OPTIONS)


@functools.lru_cache(maxsize=4)
def compiled_steps(graphdef, optimizer_cfg, defence_cfg, context, seed: int, label_key: str, mesh):
  """(optimizer, defence, jitted train step, jitted eval step) for one model and objective.

  Batches are sharded over the mesh's 'data' axis, the state is replicated and donated. Cached (the
  arguments must be hashable: FrozenConfigDicts, a defences.base.Context) so that runs in one
  process with the same model and objective (resumes, tests, sweeps) compile once: a fresh jax.jit
  recompiles the same program.
  """
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  options = compiler_options(mesh.devices.flat[0].platform)
  defence = defences_lib.from_config(defence_cfg, context)
  tx = defence_optimizer(optimizer_cfg, defence)
  train_step = jax.jit(
      make_train_step(graphdef, tx, defence, seed=seed),
      in_shardings=(replicated, data),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
      compiler_options=options,
  )
  eval_step = jax.jit(
      make_eval_step(graphdef, label_key),
      in_shardings=(replicated, data, replicated),
      out_shardings=replicated,
      compiler_options=options,
  )
  return tx, defence, train_step, eval_step
