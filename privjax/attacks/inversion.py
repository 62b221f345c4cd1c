"""White-box inversion (rMLE, He et al., ACSAC 2019): optimise an input image until its features
match the uploaded ones.

The extractor ships to the device, so an attacker can own its weights. Given the frozen
device-side function ``extractor(images) -> features`` (images float in [0, 1], [B, H, W, C];
everything the device applies, a PCA projection or a noise layer included, as deployed) and the
features a user uploaded, ``invert`` finds images x in [0, 1] minimising, per image,

    ||extractor(x) - target||^2 / ||target||^2  +  tv_weight * TV_beta(x)

by Adam on an unconstrained z with x = sigmoid(z) (images need not be square). The feature term
is relative, so one ``tv_weight`` suits any feature scale; ``total_variation`` is the prior He et
al. use, averaged over pixels so that it does not grow with the image size. How much prior is best
depends on the extractor and the step budget (a strong prior also converges faster); the attacker
owns the extractor and raw images of its own, so ``tune_tv_weight`` picks the weight that inverts
the attacker's own images best, without touching the users' images. Whichever of the learned
decoder (``reconstruction.fit_decoder``) and this inversion wins depends on the cut, so both are
run.

A noisy extractor takes a key as its second argument; with ``key`` given, ``invert`` calls
``extractor(x, step_key)`` with a fresh key every step, i.e. it matches the features in
expectation over the noise (the attacker does not know the user's draw). ``privjax.export``'s
artifact takes raw 0..255 pixels and raw key data; the caller wraps it, e.g.
``lambda x, k: f(x * 255.0, jax.random.key_data(k))``.

Cost: one jitted step per Adam update, dispatched asynchronously batch by batch (nothing is read
back until a batch ends); it costs ``steps`` forward and backward passes of the extractor per
image, far more than the decoder, so it is meant for a fixed subset of attacker-test images. The
steps are not a ``lax.scan``: XLA:CPU runs the gradients of convolutions 10-20x slower inside a
loop body than outside (see ``transfer._run_epoch``; 32 images through ``vgg_mini`` to conv4_2:
0.62 s a step in a scan, 0.07 s dispatched one by one).

Must not import ``privjax.train``, ``privjax.data``, ``privjax.models``, ``privjax.defences``,
``privjax.export`` or ``privjax.evaluate``: the extractor arrives as a callable, whatever built it.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from privjax.metrics.image_quality import psnr

DEFAULT_STEPS = 300
DEFAULT_LR = 0.05
DEFAULT_TV_WEIGHT = 1e-2
TV_WEIGHTS = (0.0, 1e-3, 1e-2, 1e-1, 1.0)


def total_variation(images, beta: float = 2.0):
  """TV_beta per image, [N]: the mean over pixels (i, j) < (H - 1, W - 1) and channels of
  ``((x[i+1, j] - x[i, j])^2 + (x[i, j+1] - x[i, j])^2) ** (beta / 2)``.

  ``beta=2`` is the smooth (squared) prior, ``beta=1`` isotropic TV; where both differences are
  zero the gradient is taken as zero (no NaN for beta < 2).
  """
  x = jnp.asarray(images)
  if x.ndim != 4:
    raise ValueError(f"expected images [N, H, W, C], got shape {x.shape}")
  dy = x[:, 1:, :-1, :] - x[:, :-1, :-1, :]
  dx = x[:, :-1, 1:, :] - x[:, :-1, :-1, :]
  s = dy * dy + dx * dx
  if beta == 2.0:
    per_pixel = s
  else:
    positive = s > 0
    per_pixel = jnp.where(positive, jnp.where(positive, s, 1.0) ** (beta / 2.0), 0.0)
  return jnp.mean(per_pixel, axis=(1, 2, 3))


def _logit(p):
  p = jnp.clip(p, 1e-4, 1.0 - 1e-4)
  return jnp.log(p) - jnp.log1p(-p)


def _terms(z, target, step_key, *, extractor, tv_beta, noisy):
  """(relative feature error [B], TV [B]) of the images sigmoid(z)."""
  flat_target = target.reshape(target.shape[0], -1).astype(jnp.float32)
  norm = jnp.maximum(jnp.sum(flat_target**2, axis=1), 1e-12)
  x = jax.nn.sigmoid(z)
  feats = extractor(x, step_key) if noisy else extractor(x)
  feats = feats.reshape(feats.shape[0], -1).astype(jnp.float32)
  err = jnp.sum((feats - flat_target) ** 2, axis=1) / norm
  return err, total_variation(x, tv_beta)


@functools.partial(jax.jit, static_argnames=("extractor", "tv_beta", "noisy", "lr"))
def _adam_step(z, opt_state, target, mask, tv_weight, key, i, *, extractor, tv_beta, noisy, lr):
  """One Adam update of z; returns (z, opt_state, masked mean objective)."""

  def loss_fn(z):
    err, tv = _terms(
        z, target, jax.random.fold_in(key, i), extractor=extractor, tv_beta=tv_beta, noisy=noisy
    )
    return jnp.sum(mask * (err + tv_weight * tv))

  loss, grad = jax.value_and_grad(loss_fn)(z)
  updates, opt_state = optax.adam(lr).update(grad, opt_state, z)
  return optax.apply_updates(z, updates), opt_state, loss / jnp.maximum(jnp.sum(mask), 1.0)


@functools.partial(jax.jit, static_argnames=("extractor", "tv_beta", "noisy"))
def _final(z, target, key, steps, *, extractor, tv_beta, noisy):
  err, _ = _terms(
      z, target, jax.random.fold_in(key, steps), extractor=extractor, tv_beta=tv_beta, noisy=noisy
  )
  return jax.nn.sigmoid(z), err


def _invert_batch(z0, target, mask, lr, tv_weight, key, *, extractor, steps, tv_beta, noisy):
  """Adam on z for ``steps`` steps; returns (sigmoid(z), per-image feature error, loss history)."""
  static = dict(extractor=extractor, tv_beta=tv_beta, noisy=noisy)
  z, opt_state, history = z0, optax.adam(lr).init(z0), []
  for i in range(steps):
    z, opt_state, loss = _adam_step(
        z, opt_state, target, mask, tv_weight, key, jnp.int32(i), lr=lr, **static
    )
    history.append(loss)
  x, err = _final(z, target, key, jnp.int32(steps), **static)
  return x, err, jnp.stack(history)


def invert(
    extractor: Callable,
    target,
    image_shape: Sequence[int],
    *,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    tv_beta: float = 2.0,
    init=None,
    key=None,
    batch_size: int = 64,
    info: dict | None = None,
) -> np.ndarray:
  """Reconstruct images [N, *image_shape] in [0, 1] from features ``target`` [N, ...].

  ``extractor`` is a jax-traceable function of a float32 batch [B, *image_shape] in [0, 1] (see
  the module docstring; with ``key``, a ``jax.random`` key, it is called as
  ``extractor(x, step_key)``). It is a static argument of the jitted loop: pass the same function
  object to reuse the compiled code. ``init`` (broadcastable to [N, *image_shape], values in
  (0, 1); default mid-grey 0.5) is the starting image, e.g. the attacker's mean image. Images are
  processed ``batch_size`` at a time (the last batch padded, so one compile serves all).
  ``info``, if a dict, receives ``feature_error`` [N] (the relative feature distance of each
  result) and ``loss`` [steps] (the mean objective per step, averaged over batches).
  """
  target = np.asarray(target, np.float32)
  n = target.shape[0]
  if n == 0:
    raise ValueError("no target features to invert")
  image_shape = tuple(int(d) for d in image_shape)
  if steps < 1:
    raise ValueError(f"steps must be positive, got {steps}")
  start = np.full((n, *image_shape), 0.5, np.float32)
  if init is not None:
    start = np.broadcast_to(np.asarray(init, np.float32), start.shape)
  z_all = np.asarray(_logit(jnp.asarray(start)))
  noisy = key is not None
  key = jax.random.key(0) if key is None else key

  bs = min(batch_size, n)
  images, errors, histories = [], [], []
  for b, lo in enumerate(range(0, n, bs)):
    m = min(bs, n - lo)
    pad = [(0, bs - m)]
    z0 = np.pad(z_all[lo : lo + m], pad + [(0, 0)] * len(image_shape))
    tgt = np.pad(target[lo : lo + m], pad + [(0, 0)] * (target.ndim - 1))
    mask = np.pad(np.ones(m, np.float32), pad)
    x, err, history = _invert_batch(
        jnp.asarray(z0),
        jnp.asarray(tgt),
        jnp.asarray(mask),
        float(lr),
        jnp.float32(tv_weight),
        jax.random.fold_in(key, b),
        extractor=extractor,
        steps=int(steps),
        tv_beta=float(tv_beta),
        noisy=noisy,
    )
    images.append(np.asarray(x[:m]))
    errors.append(np.asarray(err[:m]))
    histories.append(np.asarray(history) * m)
  if info is not None:
    info["feature_error"] = np.concatenate(errors)
    info["loss"] = np.sum(histories, axis=0) / n
  return np.concatenate(images)


def tune_tv_weight(
    extractor: Callable, images, weights: Sequence[float] = TV_WEIGHTS, **invert_kw
) -> tuple[float, dict[float, float]]:
  """(best weight, {weight: mean PSNR}): ``invert`` the attacker's own ``images`` [N, H, W, C]
  from their features with each TV weight in ``weights`` and keep the best mean PSNR (ties ->
  the first listed).

  ``invert_kw`` are ``invert``'s other settings, the same as for the real inversion (``steps``,
  ``lr``, ``init``, ``key``...); with ``key`` the features are drawn with a key of their own.
  Weights are traced, so all candidates share one compile.
  """
  images = np.asarray(images, np.float32)
  if not len(weights):
    raise ValueError("no TV weights to choose from")
  x = jnp.asarray(images)
  if invert_kw.get("key") is None:
    features = np.asarray(extractor(x))
  else:
    feature_key, invert_kw["key"] = jax.random.split(invert_kw["key"])
    features = np.asarray(extractor(x, feature_key))
  scores = {}
  for w in weights:
    recon = invert(extractor, features, images.shape[1:], tv_weight=float(w), **invert_kw)
    scores[float(w)] = float(np.mean(np.asarray(psnr(images, recon))))
  best = max(scores, key=lambda w: scores[w])  # first max on ties: dicts keep order
  return best, scores
