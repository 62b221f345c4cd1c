"""Reconstruction attack: learn an inverse network features -> image.

The paper's "deep visualization" check: if a decoder trained on (feature,
image) pairs the attacker holds can redraw a user's image from the features
the cloud receives, the features leak appearance. The decoder is

* flat features: flatten -> Dense -> [s0, s0, C0] map with s0 = S / 8 (or the
  coarsest S / 2**k, k <= 3, that is an integer >= 2);
* spatial features [H, W, C] (H, W >= 2): 3x3 conv at native resolution, then
  a bilinear resize to the coarsest grid s0 = S / 2**k (k <= 3) that is at
  least max(H, W), or to S when the map is larger than the image (no giant
  Dense on a big map);

then ``k`` stages of (nearest 2x upsample -> 3x3 conv -> ReLU) and a 3x3 conv
to RGB with a sigmoid. Inputs are standardised per feature on the attacker's
training part; MSE loss, Adam, jitted steps, and the parameters with the best
val MSE are kept.
Image-quality metrics (PSNR/SSIM) live in ``privjax.metrics``, not here.

Must not import ``privjax.train`` or ``privjax.data``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx

from privjax import paths
from privjax.attacks.common import (
    Standardizer,
    batched_apply,
    fit_standardizer,
    train_val_split,
)


def _grids(size: int, max_stages: int = 3) -> list[tuple[int, int]]:
  """[(s0, k)] with s0 = size / 2**k, k = 0..max_stages, s0 an integer >= 2."""
  out = [(size, 0)]
  while len(out) <= max_stages and size % (2 ** len(out)) == 0 and size // 2 ** len(out) >= 2:
    out.append((size // 2 ** len(out), len(out)))
  return out


class InverseNet(nnx.Module):

  def __init__(
      self, feature_shape: tuple[int, ...], image_size: int, *, width: int = 64, rngs: nnx.Rngs
  ):
    grids = _grids(image_size)
    self.image_size = image_size
    self.spatial = len(feature_shape) == 3 and min(feature_shape[:2]) >= 2
    if self.spatial:
      h, w, c = feature_shape
      # The coarsest start grid that still holds the whole map: resizing
      # up keeps every feature position, resizing down would blur them.
      fits = [g for g in grids if g[0] >= max(h, w)]
      s0, k = fits[-1] if fits else grids[0]
      self.entry = nnx.Conv(c, width, (3, 3), rngs=rngs)
    else:
      s0, k = grids[-1]
      d = int(np.prod(feature_shape))
      self.entry = nnx.Linear(d, s0 * s0 * width, rngs=rngs)
    self.s0, self.width = s0, width
    chans = [width]
    for _ in range(k):
      chans.append(max(16, chans[-1] // 2))
    self.ups = nnx.List([nnx.Conv(a, b, (3, 3), rngs=rngs) for a, b in zip(chans, chans[1:])])
    self.out = nnx.Conv(chans[-1], 3, (3, 3), rngs=rngs)

  def __call__(self, f):
    n = f.shape[0]
    if self.spatial:
      h = nnx.relu(self.entry(f))
      h = jax.image.resize(h, (n, self.s0, self.s0, self.width), "bilinear")
    else:
      h = nnx.relu(self.entry(f.reshape(n, -1)))
      h = h.reshape(n, self.s0, self.s0, self.width)
    for conv in self.ups:
      h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
      h = nnx.relu(conv(h))
    return nnx.sigmoid(self.out(h))


@functools.partial(jax.jit, static_argnames=("graphdef", "lr"))
def _train_step(params, opt_state, f, img, batches, i, *, graphdef, lr):
  # Per-step jit rather than a scan: XLA:CPU runs conv gradients inside
  # loop bodies far slower than outside (see transfer._run_epoch).
  tx = optax.adam(lr)
  batch_idx = batches[i]

  def loss_fn(p):
    return jnp.mean((nnx.merge(graphdef, p)(f[batch_idx]) - img[batch_idx]) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames=("steps", "batch_size"))
def _sample_batches(key, n, *, steps, batch_size):
  return jax.random.randint(key, (steps, batch_size), 0, n)


def _train_chunk(params, opt_state, key, f, img, *, graphdef, lr, batch_size, steps):
  batches = _sample_batches(key, f.shape[0], steps=steps, batch_size=batch_size)
  losses = []
  for i in range(steps):
    params, opt_state, loss = _train_step(
        params, opt_state, f, img, batches, i, graphdef=graphdef, lr=lr
    )
    losses.append(loss)
  return params, opt_state, jnp.mean(jnp.stack(losses))


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _val_mse(params, f, img, mask, *, graphdef):
  def one(batch):
    fb, ib, mb = batch
    err = jnp.mean((nnx.merge(graphdef, params)(fb) - ib) ** 2, axis=(1, 2, 3))
    return jnp.sum(err * mb)

  return jnp.sum(jax.lax.map(one, (f, img, mask))) / jnp.maximum(jnp.sum(mask), 1.0)


def _batches(a: np.ndarray, bs: int):
  nb = -(-a.shape[0] // bs)
  pad = nb * bs - a.shape[0]
  a = np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)])
  return jnp.asarray(a.reshape((nb, bs) + a.shape[1:]))


@dataclasses.dataclass
class Decoder:
  graphdef: nnx.GraphDef
  params: nnx.State
  standardizer: Standardizer
  image_size: int
  info: dict = dataclasses.field(default_factory=dict)

  @functools.cached_property
  def _apply(self):
    graphdef, params = self.graphdef, self.params
    mean, std = jnp.asarray(self.standardizer.mean), jnp.asarray(self.standardizer.std)

    @jax.jit
    def f(fb):
      return nnx.merge(graphdef, params)((fb.astype(jnp.float32) - mean) / std)

    return f

  def reconstruct(self, features) -> np.ndarray:
    """Images [N, S, S, 3] in [0, 1] from features [N, ...]."""
    return np.asarray(batched_apply(self._apply, np.asarray(features), 256))


def fit_decoder(
    features,
    images,
    *,
    steps: int = 3000,
    lr: float = 1e-3,
    batch_size: int = 64,
    width: int = 64,
    eval_every: int = 100,
    patience: int = 10,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> Decoder:
  """Train an inverse network mapping ``features`` [N, ...] to ``images``.

  ``images`` are float in [0, 1], [N, S, S, 3]. Val MSE is checked every
  ``eval_every`` steps; training stops after ``patience`` checks without
  improvement and the best-val parameters are kept. ``info`` has the val
  history and the MSE of predicting the train mean image on val (baseline).
  """
  start = time.perf_counter()
  features = np.asarray(features)
  images = np.asarray(images, dtype=np.float32)
  if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
    raise ValueError(f"images must be [N, S, S, 3], got {images.shape}")
  if features.shape[0] != images.shape[0]:
    raise ValueError("features and images differ in N")
  train_idx, val_idx = train_val_split(features.shape[0], val_fraction, seed)
  if val_idx.size == 0:
    raise ValueError("need a non-empty val split")
  standardizer = fit_standardizer(features[train_idx])
  fs = standardizer.apply(features)
  f_tr, img_tr = jnp.asarray(fs[train_idx]), jnp.asarray(images[train_idx])
  vbs = min(256, int(val_idx.size))
  f_val, img_val = _batches(fs[val_idx], vbs), _batches(images[val_idx], vbs)
  mask = _batches(np.ones(val_idx.size, np.float32), vbs)

  key = jax.random.key(seed)
  key, init_key = jax.random.split(key)
  model = InverseNet(features.shape[1:], images.shape[1], width=width, rngs=nnx.Rngs(init_key))
  graphdef, params = nnx.split(model)
  opt_state = optax.adam(lr).init(params)
  bs = min(batch_size, int(train_idx.size))
  chunk = max(1, min(eval_every, steps))

  mean_img = images[train_idx].mean(axis=0)
  baseline = float(np.mean((images[val_idx] - mean_img) ** 2))
  best, best_params, best_check, history = math.inf, params, -1, []
  done = 0
  for check in range(math.ceil(steps / chunk)):
    params, opt_state, loss = _train_chunk(
        params,
        opt_state,
        jax.random.fold_in(key, check),
        f_tr,
        img_tr,
        graphdef=graphdef,
        lr=lr,
        batch_size=bs,
        steps=chunk,
    )
    done += chunk
    val = float(_val_mse(params, f_val, img_val, mask, graphdef=graphdef))
    history.append({"step": done, "train_mse": float(loss), "val_mse": val})
    if val < best:
      best, best_params, best_check = val, params, check
    elif check - best_check >= patience:
      break
  info = {
      "val_mse": best,
      "mean_image_val_mse": baseline,
      "steps": done,
      "history": history,
      "train_seconds": time.perf_counter() - start,
  }
  return Decoder(
      graphdef=graphdef,
      params=best_params,
      standardizer=standardizer,
      image_size=int(images.shape[1]),
      info=info,
  )


def save_image_grid(rows, labels, path, n: int = 16) -> epath.Path:
  """PNG at ``path`` (local or a URI): one row per array of ``rows`` (images [N, S, S, 3] in
  [0, 1], the first ``n`` of each, n capped at the shortest), each named on its left by its
  ``labels`` entry (e.g. 'original', 'decoder', 'rMLE') in black on white.

  The image is (len(rows) * S) x (W + n * S) pixels, W the width of the
  longest label; the pictures themselves have no borders.
  """
  from PIL import Image, ImageDraw, ImageFont  # Pillow is only needed for this one function

  rows = [np.asarray(r) for r in rows]
  if len(labels) != len(rows):
    raise ValueError(f"{len(rows)} rows of images but {len(labels)} labels")
  if any(r.shape[1:] != rows[0].shape[1:] for r in rows):
    raise ValueError(f"image shapes differ: {[r.shape for r in rows]}")
  n = min(n, *(len(r) for r in rows))
  size = rows[0].shape[1]
  grid = np.concatenate([np.concatenate(list(r[:n]), axis=1) for r in rows], axis=0)
  pictures = Image.fromarray((np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
  font = ImageFont.load_default()
  pad = 4
  width = 2 * pad + int(max(font.getlength(label) for label in labels))
  image = Image.new("RGB", (width + pictures.width, pictures.height), "white")
  image.paste(pictures, (width, 0))
  draw = ImageDraw.Draw(image)
  for i, label in enumerate(labels):
    draw.text((pad, i * size + size // 2), label, fill="black", font=font, anchor="lm")
  path = paths.as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    image.save(f, format="PNG")
  return path
