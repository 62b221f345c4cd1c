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

then ``k`` stages of ([``blocks`` residual blocks] -> nearest 2x upsample ->
3x3 conv -> ReLU) and a 3x3 conv to RGB with a sigmoid. A residual block is
h + conv(relu(conv(h))), both 3x3 at the stage's width. The widths start at
``width`` and halve at each stage (at least 16); the full-resolution stage has
16 channels, since on CPU a convolution there costs the most for what it adds.
``width=64, blocks=0`` is the small decoder; ``width=256, blocks=1`` the
deeper one (about 17x the multiply-adds), which on the LFW photos is the first
to beat the attacker's mean image clearly (docs/results_lfw_reconstruction.md).
Inputs are standardised per feature on the attacker's training part (a feature
constant there gets weight 0).

Training (``fit_decoder``): Adam with a linear warm-up and cosine decay, the
gradient clipped to norm 1, on a weighted sum of loss terms (``LOSSES``):
``mse``, ``l1``, ``ssim`` (1 - SSIM, ``ssim`` below: the metric's values at a
tenth of its gradient's cost on CPU) and ``lpips`` (any ``lpips_fn(a, b) ->
[B]``, e.g. ``privjax.metrics.lpips.distance`` with its weights bound). The
parameters with the best SSIM on a held-out part of the attacker's own pairs
are kept.

With ``augment``, each step draws augmented copies (``augment_images``: flips,
crops, colour) of the attacker's training images and makes their features with
``extract(images, key)``: the device's function, which the attacker owns (the
extractor, the deployed transform and a fresh draw of its noise). Augmenting in
feature space instead would not be valid: the features of a flipped image are
not a flip of its features.

A *method* names a recipe: loss terms and ``aug`` joined by ``_``
(``method_recipe('l1_ssim_aug')``).

Image-quality metrics (PSNR/SSIM) live in ``privjax.metrics``, not here.
Must not import ``privjax.train``, ``privjax.data`` or ``privjax.evaluate``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

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
from privjax.metrics import image_quality


def _grids(size: int, max_stages: int = 3) -> list[tuple[int, int]]:
  """[(s0, k)] with s0 = size / 2**k, k = 0..max_stages, s0 an integer >= 2."""
  out = [(size, 0)]
  while len(out) <= max_stages and size % (2 ** len(out)) == 0 and size // 2 ** len(out) >= 2:
    out.append((size // 2 ** len(out), len(out)))
  return out


class InverseNet(nnx.Module):

  def __init__(
      self,
      feature_shape: tuple[int, ...],
      image_size: int,
      *,
      width: int = 64,
      blocks: int = 0,
      rngs: nnx.Rngs,
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
    if k:
      chans[-1] = 16
    self.blocks = nnx.List(
        [
            nnx.List([nnx.Conv(c, c, (3, 3), rngs=rngs) for _ in range(2 * blocks)])
            for c in chans[:-1]
        ]
    )
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
    for stage, conv in zip(self.blocks, self.ups):
      for i in range(0, len(stage), 2):
        h = h + stage[i + 1](nnx.relu(stage[i](h)))
      h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
      h = nnx.relu(conv(h))
    return nnx.sigmoid(self.out(h))


LOSSES = ("mse", "l1", "ssim", "lpips")
AUGMENT = "aug"


def method_recipe(method: str) -> tuple[tuple[str, ...], bool]:
  """(loss terms, augment) of a method name such as 'l1_ssim_aug'; ValueError for a bad one."""
  tokens = method.split("_")
  terms = tuple(t for t in tokens if t != AUGMENT)
  bad = [t for t in terms if t not in LOSSES]
  if bad or not terms or len(set(tokens)) != len(tokens):
    raise ValueError(
        f"decoder method {method!r}: loss terms from {', '.join(LOSSES)}, optionally "
        f"'{AUGMENT}', joined by '_' (e.g. 'l1_ssim_aug')"
    )
  return terms, AUGMENT in tokens


def _band(n: int, taps: np.ndarray) -> np.ndarray:
  """[n - len(taps) + 1, n]: row i holds ``taps`` at columns i.. ('valid' filtering as a matmul)."""
  m = n - len(taps) + 1
  out = np.zeros((m, n), np.float32)
  for i in range(m):
    out[i, i : i + len(taps)] = taps
  return out


def ssim(a, b):
  """``privjax.metrics.ssim`` per image, [N], differentiable, with the Gaussian window applied as
  two matrix products: the same values, and a gradient about 10x cheaper on CPU than through the
  metric's 11 shifted slices."""
  _, h, w, _ = a.shape
  if min(h, w) < image_quality.SSIM_WIN_SIZE:
    raise ValueError(f"ssim needs images of at least {image_quality.SSIM_WIN_SIZE} pixels a side")
  taps = image_quality.gaussian_window_1d()
  c1, c2 = image_quality.SSIM_K1**2, image_quality.SSIM_K2**2
  # Moments about each image's channel mean, as the metric computes them (float32 cancellation).
  shift_a = jnp.mean(a, axis=(1, 2), keepdims=True)
  shift_b = jnp.mean(b, axis=(1, 2), keepdims=True)
  x, y = a - shift_a, b - shift_b
  stack = jnp.stack([x, y, x * x, y * y, x * y])
  mx, my, mxx, myy, mxy = jnp.einsum("ih,knhwc,jw->knijc", _band(h, taps), stack, _band(w, taps))
  vx, vy, vxy = mxx - mx * mx, myy - my * my, mxy - mx * my
  ux, uy = mx + shift_a, my + shift_b
  num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
  den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
  return jnp.mean(num / den, axis=(1, 2, 3))


def loss_terms(recon, images, weights: dict, lpips_fn=None) -> dict:
  """{term: batch mean} of each term named in ``weights`` (``LOSSES``) between ``recon`` and
  ``images``; every term is 0 when they are equal."""
  terms = {}
  if "mse" in weights:
    terms["mse"] = jnp.mean((recon - images) ** 2)
  if "l1" in weights:
    terms["l1"] = jnp.mean(jnp.abs(recon - images))
  if "ssim" in weights:
    terms["ssim"] = 1.0 - jnp.mean(ssim(recon, images))
  if "lpips" in weights:
    terms["lpips"] = jnp.mean(lpips_fn(recon, images))
  return terms


def augment_images(key, images, *, crop: float = 0.8, jitter: float = 0.2):
  """Random flips, crops of ``crop``..1 of the side (resized back) and colour jitter
  (brightness, contrast, saturation by factors in 1 +- ``jitter``); values stay in [0, 1]."""
  n, s = images.shape[0], images.shape[1]
  k_flip, k_side, k_pos, k_col = jax.random.split(key, 4)
  flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
  x = jnp.where(flip, images[:, :, ::-1], images)
  side = jax.random.uniform(k_side, (n,), minval=crop, maxval=1.0)
  corner = jax.random.uniform(k_pos, (n, 2)) * (1.0 - side[:, None]) * s

  def crop_one(img, side, corner):
    scale = jnp.full((2,), 1.0 / side)
    return jax.image.scale_and_translate(
        img, (s, s, 3), (0, 1), scale, -corner * scale, "linear", antialias=False
    )

  x = jax.vmap(crop_one)(x, side, corner)
  b, c, sat = (
      1.0 + jitter * jax.random.uniform(k, (n, 1, 1, 1), minval=-1.0, maxval=1.0)
      for k in jax.random.split(k_col, 3)
  )
  grey = jnp.mean(x, axis=-1, keepdims=True)
  x = grey + sat * (x - grey)
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  x = mean + c * (x - mean)
  return jnp.clip(b * x, 0.0, 1.0)


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
    losses: dict[str, float] | None = None,
    augment: bool = False,
    extract: Callable | None = None,
    lpips_fn: Callable | None = None,
    steps: int = 1000,
    lr: float = 1e-3,
    warmup_steps: int = 100,
    batch_size: int = 32,
    width: int = 64,
    blocks: int = 0,
    eval_every: int = 250,
    seed: int = 0,
    val_fraction: float = 0.1,
) -> Decoder:
  """Train an inverse network mapping ``features`` [N, ...] to ``images`` [N, S, S, 3] in [0, 1].

  ``losses`` weights the terms of ``LOSSES`` (default ``{'l1': 1, 'ssim': 1}``); ``lpips`` needs
  ``lpips_fn``. ``augment`` needs ``extract(images, key) -> features`` (module docstring). A part
  ``val_fraction`` of the pairs is held out; every ``eval_every`` steps its mean SSIM is measured
  and the best parameters kept. ``info``: the val history, the kept parameters' val SSIM and MSE,
  the train mean image's, the held-out rows (``val_index``) and the time taken.
  """
  start, cpu_start = time.perf_counter(), time.process_time()
  weights = {"l1": 1.0, "ssim": 1.0} if losses is None else dict(losses)
  unknown = set(weights) - set(LOSSES)
  if unknown:
    raise ValueError(f"unknown losses {sorted(unknown)}; valid: {', '.join(LOSSES)}")
  weights = {k: float(v) for k, v in weights.items() if v}
  if not weights:
    raise ValueError("fit_decoder needs at least one loss term with a non-zero weight")
  if augment and extract is None:
    raise ValueError("augment needs extract: the features of augmented images")
  if "lpips" in weights and lpips_fn is None:
    raise ValueError("the lpips loss needs lpips_fn")
  features = np.asarray(features, np.float32)
  images = np.asarray(images, dtype=np.float32)
  if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
    raise ValueError(f"images must be [N, S, S, 3], got {images.shape}")
  if features.shape[0] != images.shape[0]:
    raise ValueError("features and images differ in N")
  train_idx, val_idx = train_val_split(features.shape[0], val_fraction, seed)
  if val_idx.size == 0:
    raise ValueError("need a non-empty val split")
  standardizer = fit_standardizer(features[train_idx])
  # The data and the standardisation go into the jitted functions as arguments: closed over, they
  # would be constants embedded in the compiled program (the attacker's whole training set), which
  # no other fit could share.
  norm = (jnp.asarray(standardizer.mean), jnp.asarray(standardizer.std))
  train_data = (jnp.asarray(features[train_idx]), jnp.asarray(images[train_idx]))

  key = jax.random.key(seed)
  key, init_key = jax.random.split(key)
  model = InverseNet(
      features.shape[1:], images.shape[1], width=width, blocks=blocks, rngs=nnx.Rngs(init_key)
  )
  graphdef, params = nnx.split(model)
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, lr, min(warmup_steps, max(steps - 1, 1)), max(steps, 2), end_value=lr * 0.01
  )
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
  opt_state = tx.init(params)
  bs = min(batch_size, int(train_idx.size))

  def decode(p, f, norm):
    mean, std = norm
    return nnx.merge(graphdef, p)((f - mean) / std)

  def loss_fn(p, f, target, norm):
    terms = loss_terms(decode(p, f, norm), target, weights, lpips_fn)
    return sum(weights[k] * v for k, v in terms.items()), terms

  # One jitted step per call rather than a scan: XLA:CPU runs conv gradients inside loop bodies
  # far slower than outside (see transfer._run_epoch).
  @jax.jit
  def train_step(params, opt_state, step_key, train_data, norm):
    f_tr, img_tr = train_data
    k_batch, k_aug, k_feat = jax.random.split(step_key, 3)
    idx = jax.random.randint(k_batch, (bs,), 0, f_tr.shape[0])
    target, f = img_tr[idx], f_tr[idx]
    if augment:
      target = augment_images(k_aug, target)
      f = jax.lax.stop_gradient(extract(target, k_feat)).reshape(f.shape)
    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, f, target, norm)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, terms

  vbs = min(128, int(val_idx.size))
  f_val, img_val = _batches(features[val_idx], vbs), _batches(images[val_idx], vbs)

  @jax.jit
  def val_scores(params, f_val, img_val, norm):
    def one(batch):
      fb, ib = batch
      recon = decode(params, fb, norm)
      return ssim(recon, ib), jnp.mean((recon - ib) ** 2, axis=(1, 2, 3))

    s, m = jax.lax.map(one, (f_val, img_val))
    n = val_idx.size
    return jnp.mean(s.reshape(-1)[:n]), jnp.mean(m.reshape(-1)[:n])

  val_images = images[val_idx]
  mean_img = images[train_idx].mean(axis=0)
  best, best_params, best_mse, history, running = -math.inf, params, math.inf, [], {}
  for step in range(steps):
    params, opt_state, terms = train_step(
        params, opt_state, jax.random.fold_in(key, step), train_data, norm
    )
    for k, v in terms.items():
      running.setdefault(k, []).append(v)
    if (step + 1) % eval_every == 0 or step + 1 == steps:
      val_ssim, val_mse = (float(v) for v in val_scores(params, f_val, img_val, norm))
      history.append(
          {
              "step": step + 1,
              "val_ssim": val_ssim,
              "val_mse": val_mse,
              **{f"train_{k}": float(jnp.mean(jnp.stack(v))) for k, v in running.items()},
          }
      )
      running = {}
      if val_ssim > best:
        best, best_params, best_mse = val_ssim, params, val_mse
  mean_images = np.broadcast_to(mean_img, val_images.shape)
  info = {
      "val_ssim": best,
      "val_mse": best_mse,
      "mean_image_val_ssim": float(jnp.mean(ssim(jnp.asarray(val_images), mean_images))),
      "mean_image_val_mse": float(np.mean((val_images - mean_img) ** 2)),
      "val_index": val_idx,
      "steps": steps,
      "history": history,
      "train_seconds": time.perf_counter() - start,
      "train_cpu_seconds": time.process_time() - cpu_start,
  }
  return Decoder(graphdef, best_params, standardizer, int(images.shape[1]), info)


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
