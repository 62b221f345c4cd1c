"""Module attackers: train a fresh flax.nnx module on frozen features.

This is the paper's attacker ("re-train the layers after the cut for the
secret task"): the caller's ``module_factory(num_classes, rngs)`` builds a
fresh module mapping features of shape ``x.shape[1:]`` to logits, typically
the cloud head's architecture re-initialised with a classifier sized for the
secret task. ``fit_mlp`` (in ``mlp.py``) reuses this same loop with an MLP
factory.

Training: AdamW on minibatches gathered on the device from device-resident
arrays by a jitted step (index batches from a per-epoch permutation), so
there are no per-step host transfers or syncs; the step and evaluation
functions take the module's GraphDef as a static argument so refits of the
same architecture and shapes reuse the compiled code. After each epoch, val
top-1 (ties broken by val loss) decides whether to keep the parameters;
training stops after ``patience`` epochs without improvement and the
best-val parameters are returned. The val part is carved from the attacker's
training data, never the test data.

Must not import ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from privjax.attacks.common import (
    ClassMap,
    Standardizer,
    batched_apply,
    fit_standardizer,
    make_class_map,
    train_val_split,
)

ModuleFactory = Callable[[int, nnx.Rngs], nnx.Module]
VAL_BATCH = 512


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


@functools.partial(jax.jit, static_argnames=("n", "steps", "batch_size"))
def _epoch_batches(key, n, *, steps, batch_size):
  return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


@functools.partial(jax.jit, static_argnames=("graphdef", "lr", "weight_decay"))
def _train_step(params, rest, opt_state, x, y, batches, i, *, graphdef, lr, weight_decay):
  tx = optax.adamw(lr, weight_decay=weight_decay)
  batch_idx = batches[i]
  xb, yb = x[batch_idx], y[batch_idx]

  def loss_fn(p, r):
    model = nnx.merge(graphdef, p, r, copy=True)
    loss = _ce(model(xb), yb)
    # Dropout RNG counters and BatchNorm statistics advance in train
    # mode; carry them forward.
    return loss, nnx.split(model, nnx.Param, ...)[2]

  (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), rest, opt_state, loss


def _run_epoch(
    params, rest, opt_state, key, x, y, *, graphdef, lr, weight_decay, batch_size, steps
):
  # One jitted step per minibatch, dispatched asynchronously (the index
  # batches live on the device, nothing is synced until the epoch's val
  # check). Not a lax.scan: XLA:CPU runs convolution gradients inside loop
  # bodies 10-70x slower than outside (jax-ml/jax#12868; measured here: a
  # 3x3 conv kernel-gradient 1 ms alone vs 70 ms inside fori_loop).
  batches = _epoch_batches(key, x.shape[0], steps=steps, batch_size=batch_size)
  losses = []
  for i in range(steps):
    params, rest, opt_state, loss = _train_step(
        params,
        rest,
        opt_state,
        x,
        y,
        batches,
        i,
        graphdef=graphdef,
        lr=lr,
        weight_decay=weight_decay,
    )
    losses.append(loss)
  return params, rest, opt_state, jnp.mean(jnp.stack(losses))


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _evaluate(params, rest, x, y, mask, *, graphdef):
  """Accuracy and mean CE over padded batches x [B, bs, ...]; mask marks real rows."""

  def one(batch):
    xb, yb, mb = batch
    logits = nnx.merge(graphdef, params, rest)(xb).astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
    hit = jnp.argmax(logits, axis=-1) == yb
    return jnp.sum(hit * mb), jnp.sum(ce * mb)

  hits, ces = jax.lax.map(one, (x, y, mask))
  n = jnp.maximum(jnp.sum(mask), 1.0)
  return jnp.sum(hits) / n, jnp.sum(ces) / n


def _pad_batches(x: np.ndarray, y: np.ndarray, bs: int):
  n = x.shape[0]
  bs = max(1, min(bs, n))
  nb = -(-n // bs)
  pad = nb * bs - n
  xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  yp = np.concatenate([y, np.zeros(pad, y.dtype)])
  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return (
      jnp.asarray(xp.reshape((nb, bs) + x.shape[1:])),
      jnp.asarray(yp.reshape(nb, bs)),
      jnp.asarray(mask.reshape(nb, bs)),
  )


@dataclasses.dataclass
class ModuleAttacker:
  """A trained nnx module (eval mode) plus its input map and class map."""

  graphdef: nnx.GraphDef
  params: nnx.State
  rest: nnx.State
  standardizer: Standardizer | None
  class_map: ClassMap
  family: str = "transfer"
  info: dict = dataclasses.field(default_factory=dict)

  def module(self) -> nnx.Module:
    return nnx.merge(self.graphdef, self.params, self.rest)

  @functools.cached_property
  def _logits_batch(self):
    graphdef, params, rest = self.graphdef, self.params, self.rest
    std = self.standardizer
    mean = None if std is None else jnp.asarray(std.mean)
    scale = None if std is None else jnp.asarray(std.std)

    @jax.jit
    def f(xb):
      xb = xb.astype(jnp.float32)
      if mean is not None:
        xb = (xb - mean) / scale
      return nnx.merge(graphdef, params, rest)(xb).astype(jnp.float32)

    return f

  def logits(self, x) -> jnp.ndarray:
    return batched_apply(self._logits_batch, np.asarray(x))

  def predict(self, x) -> np.ndarray:
    return self.class_map.decode(np.asarray(jnp.argmax(self.logits(x), axis=1)))


def fit_module(
    module_factory: ModuleFactory,
    x,
    y,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    max_epochs: int = 100,
    patience: int = 10,
    val_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
    family: str = "transfer",
) -> ModuleAttacker:
  """Train ``module_factory(num_classes, rngs)`` on (x, y) with early stopping.

  ``x`` keeps its shape ([N, H, W, C] for spatial features); standardisation
  is per feature (per element of ``x.shape[1:]``) and fitted on ``x``.
  ``info`` records epochs run, the best epoch and the val history.
  """
  if module_factory is None:
    raise ValueError("fit_module needs a module_factory(num_classes, rngs)")
  start = time.perf_counter()
  x = np.asarray(x)
  class_map = make_class_map(y)
  labels = class_map.encode(y)
  standardizer = fit_standardizer(x) if standardize else None
  xs = standardizer.apply(x) if standardize else x.astype(np.float32)

  train_idx, val_idx = train_val_split(xs.shape[0], val_fraction, seed, labels)
  if val_idx.size == 0:
    raise ValueError(
        "early stopping needs a non-empty val split; "
        "increase val_fraction or the number of examples"
    )
  x_tr, y_tr = jnp.asarray(xs[train_idx]), jnp.asarray(labels[train_idx])
  val = _pad_batches(xs[val_idx], labels[val_idx], VAL_BATCH)

  key = jax.random.key(seed)
  key, init_key = jax.random.split(key)
  model = module_factory(class_map.num_classes, nnx.Rngs(init_key))
  model.eval()
  graphdef_eval = nnx.graphdef(model)
  model.train()
  graphdef_train, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = optax.adamw(lr, weight_decay=weight_decay).init(params)

  bs = min(batch_size, int(train_idx.size))
  steps = max(1, int(train_idx.size) // bs)
  best = (-1.0, np.inf)
  best_state = (params, rest)
  best_epoch, history = -1, []
  for epoch in range(max_epochs):
    params, rest, opt_state, loss = _run_epoch(
        params,
        rest,
        opt_state,
        jax.random.fold_in(key, epoch),
        x_tr,
        y_tr,
        graphdef=graphdef_train,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=bs,
        steps=steps,
    )
    acc, vloss = (float(v) for v in _evaluate(params, rest, *val, graphdef=graphdef_eval))
    history.append({"epoch": epoch, "train_loss": float(loss), "val_top1": acc, "val_loss": vloss})
    if acc > best[0] or (acc == best[0] and vloss < best[1]):
      best, best_state, best_epoch = (acc, vloss), (params, rest), epoch
    elif epoch - best_epoch >= patience:
      break
  info = {
      "epochs": len(history),
      "best_epoch": best_epoch,
      "val_top1": best[0],
      "val_loss": best[1],
      "history": history,
      "train_seconds": time.perf_counter() - start,
  }
  return ModuleAttacker(
      graphdef=graphdef_eval,
      params=best_state[0],
      rest=best_state[1],
      standardizer=standardizer,
      class_map=class_map,
      family=family,
      info=info,
  )
