"""The jit-compiled training and evaluation steps, and the optimizer.

What lives here: `make_optimizer` (Adam with the head at a multiple of the extractor's rate, via
`optax.partition`), `make_train_step` (the joint objective on one batch of 2B images),
`make_eval_step`, and `compiled_steps` (both jitted for a data-parallel mesh). State is a plain dict
{'params', 'opt_state', 'step', 'margin'}; the model is rebuilt from its graphdef inside the traced
function (jax.jit over nnx.split/merge state).
Must not import privjax.data or do any I/O.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from privjax import objectives


def _group_labels(params):
  return {group: jax.tree_util.tree_map(lambda _: group, tree) for group, tree in params.items()}


def make_optimizer(opt_cfg) -> optax.GradientTransformation:
  def adam(lr):
    return optax.adam(lr, b1=opt_cfg.b1, b2=opt_cfg.b2)

  return optax.partition(
      {'extractor': adam(opt_cfg.lr), 'head': adam(opt_cfg.lr * opt_cfg.head_lr_mult)},
      _group_labels,
  )


def _flat_pairs(batch):
  """[B,2,...] pair rows → one batch of 2B examples (a0, b0, a1, b1, ...)."""
  images = batch['image']
  return images.reshape((-1,) + images.shape[2:]), batch['label'].reshape(-1)


def pair_statistics(features, same, *, normalize: bool):
  """Squared pair distances and the metrics users need to read the margin against."""
  f = features.reshape((features.shape[0] // 2, 2, -1))
  d2 = objectives.pair_distances_squared(f[:, 0], f[:, 1], normalize=normalize)
  d = jnp.sqrt(jnp.maximum(d2, 0.0))
  same = same.astype(jnp.float32)
  stats = {
      'feature_norm': jnp.linalg.norm(f.astype(jnp.float32), axis=-1).mean(),
      'dist_same': (d * same).sum() / jnp.maximum(same.sum(), 1.0),
      'dist_diff': (d * (1 - same)).sum() / jnp.maximum((1 - same).sum(), 1.0),
  }
  return d2, stats


def make_train_step(graphdef, tx, contrastive_cfg, *, siamese: bool):
  weight = float(contrastive_cfg.weight) if siamese else 0.0
  normalize = bool(contrastive_cfg.normalize)

  def loss_fn(params, images, labels, same, margin):
    model = nnx.merge(graphdef, params)
    features, logits = model.features_and_logits(images)
    ce = objectives.cross_entropy(logits, labels)
    d2, stats = pair_statistics(features, same, normalize=normalize)
    contrastive = objectives.contrastive_from_distances(d2, same, margin)
    if not siamese:
      contrastive = jax.lax.stop_gradient(contrastive)
    # CE(a) + CE(b): each branch's mean cross-entropy, summed (= 2 x the mean over 2B images).
    loss = 2.0 * ce + weight * contrastive
    accuracy = (jnp.argmax(logits, -1) == labels).mean()
    return loss, dict(stats, loss=loss, ce=ce, contrastive=contrastive, accuracy=accuracy)

  def train_step(state, batch):
    images, labels = _flat_pairs(batch)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(
        state['params'], images, labels, batch['same'], state['margin']
    )
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics['grad_norm'] = optax.tree.norm(grads)
    new_state = dict(state, params=params, opt_state=opt_state, step=state['step'] + 1)
    return new_state, metrics

  return train_step


def make_pair_distance_fn(graphdef, *, normalize: bool):
  """params, batch → distances of each pair at the cut (for margin calibration)."""

  def distances(params, batch):
    images, _ = _flat_pairs(batch)
    features = nnx.merge(graphdef, params).extractor(images)
    d2, _ = pair_statistics(features, batch['same'], normalize=normalize)
    return jnp.sqrt(d2)

  return distances


def init_state(params, tx, margin) -> dict:
  """The training state the step takes and returns: parameters, optimizer state, step, margin."""
  return {
      'params': params,
      'opt_state': tx.init(params),
      'step': np.int32(0),
      'margin': np.float32(margin),
  }


def make_eval_step(graphdef, label_key: str):
  """params, padded batch → (number correct, summed CE, number of real examples)."""

  def eval_step(params, batch):
    logits = nnx.merge(graphdef, params)(batch['image']).astype(jnp.float32)
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
def compiled_steps(graphdef, optimizer_cfg, contrastive_cfg, siamese: bool, label_key: str, mesh):
  """(optimizer, jitted train step, jitted eval step) for one model and objective on `mesh`.

  Batches are sharded over the mesh's 'data' axis, the state is replicated and donated. Cached (the
  configs must be hashable, e.g. FrozenConfigDicts) so that runs in one process with the same model
  and objective (resumes, tests, sweeps) compile once: a fresh jax.jit recompiles the same program.
  """
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  options = compiler_options(mesh.devices.flat[0].platform)
  tx = make_optimizer(optimizer_cfg)
  train_step = jax.jit(
      make_train_step(graphdef, tx, contrastive_cfg, siamese=siamese),
      in_shardings=(replicated, data),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
      compiler_options=options,
  )
  eval_step = jax.jit(
      make_eval_step(graphdef, label_key),
      in_shardings=(replicated, data),
      out_shardings=replicated,
      compiler_options=options,
  )
  return tx, train_step, eval_step
