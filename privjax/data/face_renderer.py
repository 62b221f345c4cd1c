"""The synthetic face renderer: face-like portraits with identity, gender and smiling labels.

``generate_faces`` renders whole data sets with a vectorised numpy renderer: per-identity facial
traits, per-image nuisance (pose, scale, lighting, expression, background, glasses/hat occluders,
sensor noise) and the labels ``identity``, ``gender`` (fixed per identity) and ``smiling`` (per
image).  ``identity_genders`` gives the genders alone, ``rng`` the random streams (the synthetic
data set draws its splits from ``STREAM_SPLIT``).

The output is a pure function of (``GENERATOR_VERSION``, arguments).  The per-pixel path uses only
IEEE-exact float32 operations (+ - * / sqrt floor min max) so results do not depend on the SIMD
libm numpy happens to pick.

Must import nothing but numpy and the standard library: no TFDS, no TensorFlow, nothing from
privjax (the TFDS builder is ``privjax.data.synthetic_faces``).
"""

from __future__ import annotations

import concurrent.futures
import math
import os

import numpy as np

# Bump together with SyntheticFaces.VERSION whenever the rendered pixels or the
# split assignment change, so that stale prepared data is never reused.
GENERATOR_VERSION = 1

_CHUNK = 25  # images per vectorised batch (cache-sized); fixed => noise is reproducible
_MAX_WORKERS = 4

# Stream tags keep the random streams of different concerns independent, so
# e.g. changing images_per_identity does not re-draw who is male or female.
_STREAM_GENDER, _STREAM_TRAITS, _STREAM_IMAGES, _STREAM_NOISE, STREAM_SPLIT = range(5)


def rng(seed: int, *stream: int) -> np.random.Generator:
  """The random stream `stream` (tags above) of `seed`, tied to the generator version."""
  return np.random.default_rng(np.random.SeedSequence([int(seed), GENERATOR_VERSION, *stream]))


# ---------------------------------------------------------------------------
# Identities and their traits.
# ---------------------------------------------------------------------------

_SKIN_LIGHT = np.array([0.96, 0.82, 0.71])
_SKIN_MID = np.array([0.80, 0.58, 0.42])
_SKIN_DARK = np.array([0.42, 0.27, 0.18])

# Few discrete hair colours on purpose: many identities share a colour, so
# identity cannot be read off as a colour lookup.
_HAIR_PALETTE = np.array(
    [
        [0.07, 0.06, 0.06],  # black
        [0.24, 0.15, 0.09],  # dark brown
        [0.45, 0.30, 0.17],  # brown
        [0.86, 0.72, 0.45],  # blonde
        [0.62, 0.26, 0.12],  # auburn
        [0.66, 0.65, 0.63],  # grey
    ]
)
_HAIR_PROBS = np.array([0.30, 0.25, 0.18, 0.12, 0.08, 0.07])

_IRIS_PALETTE = np.array(
    [
        [0.30, 0.18, 0.08],
        [0.15, 0.09, 0.05],
        [0.25, 0.45, 0.70],
        [0.30, 0.50, 0.30],
        [0.45, 0.38, 0.20],
    ]
)


def identity_genders(num_identities: int, seed: int) -> np.ndarray:
  """int64 [num_identities], 0=female 1=male; exactly floor(N/2) males."""
  g = np.zeros(num_identities, np.int64)
  g[: num_identities // 2] = 1
  return rng(seed, _STREAM_GENDER).permutation(g)


def _identity_traits(num_identities: int, seed: int) -> dict[str, np.ndarray]:
  """Fixed per-person traits (canonical face frame, see _render_chunk).

  Gender shifts only hair length, jaw, eyebrow thickness, lip redness and
  beard; all with overlapping distributions.  Everything else (face size,
  eye/nose/mouth geometry, skin, hair colour and style, ...) is gender-free.
  """
  n = num_identities
  gender = identity_genders(n, seed).astype(np.float64)
  r = rng(seed, _STREAM_TRAITS)
  t = {}
  t['gender'] = gender
  t['face_a'] = r.normal(0.47, 0.03, n)  # half width
  t['face_b'] = r.normal(0.60, 0.035, n)  # half height
  t['square'] = r.uniform(0.0, 0.7, n)  # ellipse -> squircle blend
  t['jaw'] = np.where(gender > 0, r.normal(0.84, 0.06, n), r.normal(0.62, 0.06, n))
  tone = r.uniform(0.0, 1.0, n)
  lo = np.clip(tone * 2, 0, 1)[:, None]
  hi = np.clip(tone * 2 - 1, 0, 1)[:, None]
  skin = _SKIN_LIGHT + lo * (_SKIN_MID - _SKIN_LIGHT) + hi * (_SKIN_DARK - _SKIN_MID)
  t['skin'] = np.clip(skin + r.normal(0, 0.02, (n, 3)), 0, 1)
  hair_idx = r.choice(len(_HAIR_PALETTE), size=n, p=_HAIR_PROBS)
  t['hair'] = np.clip(_HAIR_PALETTE[hair_idx] + r.normal(0, 0.03, (n, 3)), 0, 1)
  t['hair_len'] = np.clip(
      np.where(gender > 0, r.normal(0.22, 0.12, n), r.normal(0.80, 0.12, n)), 0, 1
  )
  t['hair_volume'] = r.uniform(0.05, 0.20, n)
  t['hair_top'] = r.uniform(0.03, 0.12, n)
  t['hair_freq'] = r.uniform(6.0, 10.0, n)  # strands, period ~3-5 px at 64x64
  style = r.integers(0, 4, n)  # plain, side parting, fringe, receding
  depth = np.array([0.30, 0.30, 0.48, 0.16])[style] + r.normal(0, 0.04, n)
  t['hairline_depth'] = depth
  t['hairline_curv'] = np.array([0.4, 0.2, 0.05, 0.8])[style] + r.normal(0, 0.05, n)
  t['hairline_slope'] = np.where(style == 1, r.choice([-1.0, 1.0], n) * r.uniform(0.2, 0.4, n), 0.0)
  t['brow_thick'] = np.where(gender > 0, r.normal(0.050, 0.008, n), r.normal(0.024, 0.006, n))
  t['brow_thick'] = np.clip(t['brow_thick'], 0.012, None)
  t['brow_gap'] = r.uniform(0.07, 0.11, n)
  t['brow_slant'] = r.uniform(-0.25, 0.25, n)
  t['eye_x'] = r.uniform(0.17, 0.24, n)  # half the eye spacing
  t['eye_y'] = r.uniform(-0.14, -0.04, n)  # relative to face centre
  t['eye_rx'] = r.uniform(0.075, 0.105, n)
  t['eye_ratio'] = r.uniform(0.45, 0.65, n)
  t['iris'] = _IRIS_PALETTE[r.integers(0, len(_IRIS_PALETTE), n)]
  t['nose_len'] = r.uniform(0.12, 0.24, n)
  t['nose_w'] = r.uniform(0.03, 0.06, n)
  t['mouth_w'] = r.uniform(0.12, 0.21, n)
  t['mouth_y'] = r.uniform(0.30, 0.38, n)
  t['lip_red'] = np.clip(
      np.where(gender > 0, r.normal(0.25, 0.10, n), r.normal(0.65, 0.10, n)), 0, 1
  )
  t['beard'] = np.where((gender > 0) & (r.uniform(size=n) < 0.4), r.uniform(0.6, 0.95, n), 0.0)
  t['ear'] = r.uniform(0.8, 1.2, n)
  return t


def _image_params(traits, images_per_identity: int, seed: int) -> dict[str, np.ndarray]:
  """Per-image nuisance and expression, plus the traits gathered per image."""
  n_id = len(traits['gender'])
  n = n_id * images_per_identity
  r = rng(seed, _STREAM_IMAGES)
  ident = np.repeat(np.arange(n_id), images_per_identity)
  p = {k: v[ident] for k, v in traits.items()}
  p['identity'] = ident
  # Exactly half of each person's images smile (odd count: one coin flip), so
  # smiling is ~50% overall and carries no identity information.
  half = images_per_identity // 2
  base = np.zeros((n_id, images_per_identity), np.int64)
  base[:, :half] = 1
  if images_per_identity % 2:
    base[:, -1] = r.integers(0, 2, n_id)
  order = np.argsort(r.random((n_id, images_per_identity)), axis=1, kind='stable')
  smiling = np.take_along_axis(base, order, axis=1).reshape(-1)
  p['smiling'] = smiling
  p['smile_amt'] = r.uniform(0.75, 1.25, n)
  # Rotation/gradient directions come from tan / normalised Gaussians so only
  # sqrt is needed (bit-exact everywhere, unlike vectorised sin/cos).
  tan = r.uniform(-1, 1, n) * 0.21255656167002213  # tan(12 degrees)
  p['cos'] = 1.0 / np.sqrt(1.0 + tan * tan)
  p['sin'] = tan * p['cos']
  p['scale'] = r.uniform(0.88, 1.12, n)
  p['tx'] = r.uniform(-0.11, 0.11, n)  # +-3.5 px at 64x64
  p['ty'] = r.uniform(-0.11, 0.11, n)
  p['eye_open'] = r.uniform(0.75, 1.1, n)
  p['bg0'] = r.uniform(0.05, 0.95, (n, 3))
  p['bg1'] = r.uniform(0.05, 0.95, (n, 3))
  p['bg_fx'] = r.uniform(-3.0, 3.0, n)
  p['bg_fy'] = r.uniform(-3.0, 3.0, n)
  p['bg_phase'] = r.uniform(0.0, 1.0, n)
  p['bg_contrast'] = r.uniform(0.0, 1.0, n)
  p['shirt'] = r.uniform(0.05, 0.95, (n, 3))
  p['glasses'] = (r.uniform(size=n) < 0.2).astype(np.float64)
  p['sunglasses'] = (r.uniform(size=n) < 0.3).astype(np.float64)
  p['frame'] = r.uniform(0.0, 0.5, (n, 3))
  p['hat'] = (r.uniform(size=n) < 0.15).astype(np.float64)
  p['hat_col'] = r.uniform(0.05, 0.95, (n, 3))
  p['hat_line'] = r.uniform(0.40, 0.60, n)  # fraction of face_b above centre
  p['bright'] = r.uniform(0.55, 1.3, n)
  p['grad'] = r.uniform(0.0, 0.35, n)
  d = r.normal(size=(n, 2))
  d /= np.sqrt((d * d).sum(1, keepdims=True)) + 1e-12
  p['grad_x'], p['grad_y'] = d[:, 0], d[:, 1]
  p['cast'] = 1.0 + r.normal(0.0, 0.07, (n, 3))
  p['noise'] = r.uniform(0.01, 0.04, n)
  return p


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------
#
# Images are drawn back to front with antialiased alpha masks evaluated over a
# pixel grid, batch-vectorised over _CHUNK images in a planar [3, B, S, S]
# float32 buffer.  Every shape lives in a canonical face frame (u, v); each
# image maps it to pixels with its own rotation, scale and shift.  A shape is
# only evaluated inside the pixel window that bounds it in every image of the
# batch, and rare layers (beard, glasses, hat) only on the images having them.

_F32 = np.float32
_FACE_CY = -0.04  # canonical face centre (image spans [-1, 1], y down)
_WHITE_EYE = (0.93, 0.93, 0.90)
_PUPIL = (0.03, 0.03, 0.03)
_TEETH = (0.90, 0.90, 0.86)
_LIP_RED = (0.75, 0.20, 0.25)
_MOUTH_DARK = (0.30, 0.05, 0.07)


def _tri(t):
  """Triangle wave in [0, 1] with period 1 (floor-based: bit-exact)."""
  t = t - np.floor(t)
  t *= 2.0
  t -= 1.0
  return np.abs(t, out=t)


def _ellipse_sd(du, dv, rx, ry, sq=None, box=True):
  """Approximate signed distance to an axis-aligned ellipse.

  The first-order estimate (q - 1) / |grad q| is accurate near the edge, so
  antialiasing is ~1 px wide.  Far off the long axis of a thin ellipse it
  badly underestimates (ghost coverage beyond an eyebrow's tip), so it is
  floored by the distance to the bounding box, a true lower bound of the
  distance (the shape lies inside the box): alpha is then exactly 0 from
  half a pixel outside the box on, which makes window-restricted evaluation
  exact.  `sq` blends towards a squircle |x|^4 + |y|^4 = 1 (squarer faces);
  its gradient is approximated by the ellipse's (both agree on the axes).
  """
  irx2 = 1.0 / (rx * rx)
  iry2 = 1.0 / (ry * ry)
  a = du * du
  a *= irx2
  b = dv * dv
  b *= iry2
  q = a + b
  if sq is not None:
    q4 = np.sqrt(a * a + b * b)
    q4 -= q
    q4 *= sq
    q += q4
  a *= irx2
  b *= iry2
  a += b
  g = np.sqrt(a, out=a)
  g *= 2.0
  g += 1e-6
  q -= 1.0
  q /= g
  if box:
    np.maximum(q, np.abs(du) - rx, out=q)
    np.maximum(q, np.abs(dv) - ry, out=q)
  return q


def _alpha(sd, ipx):
  """Coverage of a pixel by the inside (sd < 0) of a shape, ~1 px ramp."""
  a = sd * -ipx
  a += 0.5
  return np.clip(a, 0.0, 1.0, out=a)


def _paint(img, win, alpha, colour):
  """Alpha-composites `colour` over the window of a planar [3, B, S, S] image."""
  rs, cs = win
  sub = img[:, :, rs, cs]
  tmp = np.subtract(colour, sub)
  tmp *= alpha
  sub += tmp


class _Chunk:
  """Canonical (face-frame) coordinates of one batch of images."""

  def __init__(self, p: dict[str, np.ndarray], idx: np.ndarray, size: int, grid=None):
    self.p, self.idx, self.size = p, idx, size
    self.cos, self.sin = p['cos'][idx], p['sin'][idx]
    self.sc, self.tx, self.ty = p['scale'][idx], p['tx'][idx], p['ty'][idx]
    if grid is None:
      g = ((np.arange(size) + 0.5) * (2.0 / size) - 1.0).astype(_F32)
      c, s, sc = self.c('cos'), self.c('sin'), self.c('scale')
      dx, dy = g[None, None, :] - self.c('tx'), g[None, :, None] - self.c('ty')
      grid = (g[None, None, :], g[None, :, None], (c * dx + s * dy) / sc, (c * dy - s * dx) / sc)
    self.X, self.Y, self.U, self.V = grid
    self.ipx = self.c('scale') * _F32(size / 2.0)  # pixels per canonical unit

  def subset(self, local: np.ndarray) -> '_Chunk':
    return _Chunk(
        self.p, self.idx[local], self.size, (self.X, self.Y, self.U[local], self.V[local])
    )

  def v(self, name):
    return self.p[name][self.idx].astype(_F32)

  def c(self, name):
    """Per-image scalar broadcastable to [B, h, w]."""
    return self.v(name)[:, None, None]

  @staticmethod
  def rgb(x):
    """Per-image colour [B, 3] (or one colour) broadcastable to [3, B, h, w]."""
    x = np.asarray(x, _F32)
    return x.T[:, :, None, None] if x.ndim == 2 else x[:, None, None, None]

  def window(self, u0, u1, v0, v1):
    """Pixel rows/cols containing the canonical box in every image (+margin)."""
    shape = self.cos.shape
    u0, u1, v0, v1 = (np.broadcast_to(np.asarray(t, np.float64), shape) for t in (u0, u1, v0, v1))
    u = np.stack([u0, u1, u0, u1])
    v = np.stack([v0, v0, v1, v1])
    x = self.sc * (self.cos * u - self.sin * v) + self.tx
    y = self.sc * (self.sin * u + self.cos * v) + self.ty
    s = self.size
    to_px = lambda t: (t + 1.0) * (s / 2.0) - 0.5
    r0 = int(np.clip(np.floor(to_px(y.min())) - 2, 0, s))
    r1 = int(np.clip(np.ceil(to_px(y.max())) + 3, r0, s))
    c0 = int(np.clip(np.floor(to_px(x.min())) - 2, 0, s))
    c1 = int(np.clip(np.ceil(to_px(x.max())) + 3, c0, s))
    return slice(r0, r1), slice(c0, c1)

  def uv(self, win):
    rs, cs = win
    return self.U[:, rs, cs], self.V[:, rs, cs]


def _on_subset(ch: _Chunk, img, flags, draw):
  """Runs draw(sub_chunk, sub_img) on the images whose flag is set."""
  local = np.flatnonzero(flags)
  if local.size:
    sub = img[:, local]
    draw(ch.subset(local), sub)
    img[:, local] = sub


def _face(ch: _Chunk):
  """Face window, its (u, v) and the face coverage: ellipse/squircle whose
  lower half tapers towards the jaw width."""
  a, b = ch.v('face_a'), ch.v('face_b')
  cy0 = _F32(_FACE_CY)
  win = ch.window(-a, a, cy0 - b, cy0 + b)
  u_, v_ = ch.uv(win)
  dv = v_ - cy0
  taper = np.clip(dv / ch.c('face_b'), 0.0, 1.0)
  taper *= ch.c('jaw') - 1.0
  taper += 1.0
  taper *= ch.c('face_a')
  # no box floor: with a per-row width it would over-sharpen the jaw edge;
  # the face is never thin, so the first-order estimate is good.
  sd = _ellipse_sd(u_, dv, taper, ch.c('face_b'), ch.c('square'), box=False)
  return win, u_, v_, dv, _alpha(sd, ch.ipx)


def _hair_colour(ch, u_, scale=1.0, shade=None):
  # Contrasty strands make hair a texture, recognisable whatever its colour
  # (blonde hair on light skin is otherwise nearly invisible).
  strands = _tri(u_ * ch.c('hair_freq'))
  strands *= -0.4
  strands += 1.0
  if shade is not None:
    strands *= shade
  return ch.rgb(ch.v('hair') * scale) * strands


def _draw_beard(ch: _Chunk, img):
  win, u_, v_, dv, a_face = _face(ch)
  my = _F32(_FACE_CY) + ch.c('mouth_y')
  a = np.clip((v_ - (my - 0.07)) * ch.ipx + 0.5, 0.0, 1.0)
  a *= a_face
  a *= ch.c('beard')
  _paint(img, win, a, _hair_colour(ch, u_, 0.9))


def _draw_glasses(ch: _Chunk, img):
  ex, ey, erx = ch.v('eye_x'), _F32(_FACE_CY) + ch.v('eye_y'), ch.v('eye_rx')
  win = ch.window(-(ex + 1.9 * erx), ex + 1.9 * erx, ey - 1.5 * erx, ey + 1.5 * erx)
  u_, v_ = ch.uv(win)
  cex, cerx = ex[:, None, None], erx[:, None, None]
  au = np.abs(u_) - cex
  dve = v_ - ey[:, None, None]
  lrx = 1.75 * cerx
  sd = _ellipse_sd(au, dve, lrx, 1.35 * cerx)
  tint = 0.12 + 0.8 * ch.c('sunglasses')
  _paint(img, win, tint * _alpha(sd, ch.ipx), ch.rgb(ch.v('frame') * 0.3))
  thick = _F32(0.03)
  ring = _alpha(np.abs(sd) - 0.5 * thick, ch.ipx)
  bridge = np.maximum(np.abs(u_) - (cex - lrx + 0.02), np.abs(dve + 0.02) - 0.5 * thick)
  ring = np.maximum(ring, _alpha(bridge, ch.ipx))
  _paint(img, win, ring, ch.rgb(ch.v('frame')))


def _draw_hat(ch: _Chunk, img):
  a, ca = ch.v('face_a'), ch.c('face_a')
  hl = _F32(_FACE_CY) - ch.v('face_b') * ch.v('hat_line')
  win = ch.window(-1.5 * a, 1.5 * a, hl - 0.7, hl + 0.06)
  u_, v_ = ch.uv(win)
  chl = hl[:, None, None]
  crown = _alpha(_ellipse_sd(u_, v_ - (chl - 0.25), 1.18 * ca, _F32(0.42)), ch.ipx)
  crown *= np.clip((chl - v_) * ch.ipx + 0.5, 0.0, 1.0)
  brim = _alpha(_ellipse_sd(u_, v_ - chl, 1.45 * ca, _F32(0.045)), ch.ipx)
  _paint(img, win, np.maximum(crown, brim), ch.rgb(ch.v('hat_col')))


def _render_chunk(p, idx: np.ndarray, size: int, noise_rng: np.random.Generator) -> np.ndarray:
  """uint8 [B, S, S, 3] images for the global image indices `idx`."""
  ch = _Chunk(p, idx, size)
  c, v, rgb, ipx = ch.c, ch.v, ch.rgb, ch.ipx
  a, b = v('face_a'), v('face_b')
  ca, cb = c('face_a'), c('face_b')
  cy0 = _F32(_FACE_CY)
  skin = v('skin')

  # Background: two random colours mixed by an oriented stripe texture.
  w = _tri(c('bg_fx') * ch.X + c('bg_fy') * ch.Y + c('bg_phase'))
  w *= c('bg_contrast')
  bg0 = rgb(v('bg0'))
  img = w * (rgb(v('bg1')) - bg0)
  img += bg0

  # Shirt / shoulders.
  win = ch.window(-0.95, 0.95, cy0 + b + 0.17, cy0 + b + 1.07)
  u_, v_ = ch.uv(win)
  sd = _ellipse_sd(u_, v_ - (cy0 + cb + 0.62), _F32(0.95), _F32(0.45))
  _paint(img, win, _alpha(sd, ipx), rgb(v('shirt')))

  # Hair behind the head: its lower edge is the (gender-shifted) hair length.
  top = cy0 - b - v('hair_top')
  bot = cy0 + b * (-0.3 + 1.9 * v('hair_len'))
  hrx = a * (1.08 + v('hair_volume'))
  win = ch.window(-hrx, hrx, top, bot)
  u_, v_ = ch.uv(win)
  hcy, hry = ((top + bot) / 2)[:, None, None], ((bot - top) / 2)[:, None, None]
  sd = _ellipse_sd(u_, v_ - hcy, hrx[:, None, None], hry, _F32(0.6))
  du, dv = u_ / hrx[:, None, None], (v_ - hcy) / hry
  volume = np.minimum(du * du + dv * dv, 1.0)  # darker towards the outline
  volume *= -0.3
  volume += 1.0
  _paint(img, win, _alpha(sd, ipx), _hair_colour(ch, u_, shade=volume))

  # Neck.
  win = ch.window(-0.45 * a, 0.45 * a, cy0 + 0.5 * b, np.full_like(a, 2.0))
  u_, v_ = ch.uv(win)
  sd = np.maximum(np.abs(u_) - 0.45 * ca, (cy0 + 0.5 * cb) - v_)
  _paint(img, win, _alpha(sd, ipx), rgb(skin * 0.82))

  # Ears (mirror-symmetric: evaluated once on |u|).
  er = v('ear')
  win = ch.window(
      -(0.97 * a + 0.08 * er), 0.97 * a + 0.08 * er, cy0 - 0.04 - 0.14 * er, cy0 - 0.04 + 0.14 * er
  )
  u_, v_ = ch.uv(win)
  sd = _ellipse_sd(np.abs(u_) - 0.97 * ca, v_ - (cy0 - 0.04), 0.065 * c('ear'), 0.12 * c('ear'))
  _paint(img, win, _alpha(sd, ipx), rgb(skin * 0.9))

  # Face with radial shading, then the hairline (plain / side parting /
  # fringe / receding) drawn inside it.
  win, u_, v_, dv, a_face = _face(ch)
  un = u_ / ca
  dn = dv / cb
  shade = np.minimum(un * un + dn * dn, 1.0)
  shade *= -0.22
  shade += 1.0
  _paint(img, win, a_face, rgb(skin) * shade)
  line = c('hairline_curv') * un
  line += c('hairline_slope')
  line *= un
  line += c('hairline_depth') - 1.0
  line -= dn
  line *= cb * ipx
  line += 0.5
  a_hair = np.clip(line, 0.0, 1.0, out=line)
  a_hair *= a_face
  _paint(img, win, a_hair, _hair_colour(ch, u_))
  _on_subset(ch, img, v('beard') > 0, _draw_beard)

  # Eyes and eyebrows (mirror-symmetric).
  ex, ey, erx = v('eye_x'), cy0 + v('eye_y'), v('eye_rx')
  cex, cey, cerx = ex[:, None, None], ey[:, None, None], erx[:, None, None]
  win = ch.window(-(ex + 1.4 * erx), ex + 1.4 * erx, ey - v('brow_gap') - 0.1, ey + erx)
  u_, v_ = ch.uv(win)
  au = np.abs(u_) - cex
  dvb = v_ - (cey - c('brow_gap')) - c('brow_slant') * au
  sd = _ellipse_sd(au, dvb, 1.3 * cerx, 0.5 * c('brow_thick'))
  _paint(img, win, _alpha(sd, ipx), rgb(v('hair') * 0.7))
  dve = v_ - cey
  a_eye = _alpha(_ellipse_sd(au, dve, cerx, cerx * c('eye_ratio') * c('eye_open')), ipx)
  _paint(img, win, a_eye, rgb(_WHITE_EYE))
  a_iris = _alpha(_ellipse_sd(au, dve, 0.55 * cerx, 0.55 * cerx), ipx)
  a_iris *= a_eye
  _paint(img, win, a_iris, rgb(v('iris')))
  a_pupil = _alpha(_ellipse_sd(au, dve, 0.25 * cerx, 0.25 * cerx), ipx)
  a_pupil *= a_eye
  _paint(img, win, a_pupil, rgb(_PUPIL))

  # Nose: soft shading plus nostrils.
  nl, nwid = v('nose_len'), v('nose_w')
  win = ch.window(-(nwid + 0.06), nwid + 0.06, ey, ey + nl + 0.08)
  u_, v_ = ch.uv(win)
  cnl, cnw = nl[:, None, None], nwid[:, None, None]
  a_nose = _alpha(_ellipse_sd(u_, v_ - (cey + 0.03 + 0.5 * cnl), cnw, 0.5 * cnl), ipx)
  a_nose *= 0.6
  _paint(img, win, a_nose, rgb(skin * 0.8))
  sd = _ellipse_sd(np.abs(u_) - 0.7 * cnw, v_ - (cey + 0.02 + cnl), _F32(0.022), _F32(0.014))
  _paint(img, win, _alpha(sd, ipx), rgb(skin * 0.45))

  # Mouth: a closed lip line, or (smiling) an open lower half-ellipse with
  # teeth.  One code path for both, so expression costs nothing extra.
  mw, my = v('mouth_w'), cy0 + v('mouth_y')
  win = ch.window(-(1.2 * mw + 0.04), 1.2 * mw + 0.04, my - 0.07, my + 0.16)
  u_, v_ = ch.uv(win)
  smile = c('smiling')
  s = smile * c('smile_amt')
  mrx = c('mouth_w') * (1.0 + 0.12 * s)
  mry = 0.024 + 0.075 * s
  dvm = v_ - (my[:, None, None] - 0.012)
  cut = np.clip((dvm + (1.0 - smile)) * ipx + 0.5, 0.0, 1.0)  # smile: lower half
  lip = skin + v('lip_red')[:, None] * (np.array(_LIP_RED, _F32) - skin)
  a_lip = _alpha(_ellipse_sd(u_, dvm, mrx + 0.015, mry + 0.015), ipx)
  a_lip *= cut
  _paint(img, win, a_lip, rgb(lip))
  inner = np.where(v('smiling')[:, None] > 0, np.array(_MOUTH_DARK, _F32), lip)
  a_in = _alpha(_ellipse_sd(u_, dvm, mrx, mry), ipx)
  a_in *= cut
  _paint(img, win, a_in, rgb(inner))
  a_teeth = np.clip((0.035 - dvm) * ipx + 0.5, 0.0, 1.0)
  a_teeth *= a_in
  a_teeth *= smile
  _paint(img, win, a_teeth, rgb(_TEETH))

  # Occluders.
  _on_subset(ch, img, v('glasses') > 0, _draw_glasses)
  _on_subset(ch, img, v('hat') > 0, _draw_hat)

  # Camera: brightness and directional light gradient, colour cast, sensor
  # noise (uniform with the drawn std: ~4x cheaper to draw than Gaussian),
  # then quantisation.  255 is folded into the gain.
  light = c('grad_x') * ch.X + c('grad_y') * ch.Y
  light *= c('grad')
  light += 1.0
  light *= c('bright') * 255.0
  img *= light
  img *= rgb(v('cast'))
  noise = noise_rng.random(img.shape, dtype=_F32)
  noise -= 0.5
  noise *= c('noise') * _F32(255.0 * math.sqrt(12.0))
  img += noise
  img += 0.5
  np.clip(img, 0.0, 255.0, out=img)
  return img.astype(np.uint8).transpose(1, 2, 3, 0)


def generate_faces(
    num_identities: int, images_per_identity: int, image_size: int, seed: int
) -> dict[str, np.ndarray]:
  """Renders the whole data set.

  Returns {'image': uint8 [N,S,S,3], 'identity': int64 [N], 'gender': int64
  [N] (0=female, 1=male), 'smiling': int64 [N]} with
  N = num_identities * images_per_identity, ordered by identity (image j of
  identity i is row i * images_per_identity + j).  Deterministic in
  (generator version, arguments).
  """
  if num_identities < 2 or images_per_identity < 1 or image_size < 8:
    raise ValueError('need >= 2 identities, >= 1 image each, size >= 8')
  traits = _identity_traits(num_identities, seed)
  p = _image_params(traits, images_per_identity, seed)
  n = num_identities * images_per_identity
  images = np.empty((n, image_size, image_size, 3), np.uint8)

  def render(k: int) -> None:
    idx = np.arange(k * _CHUNK, min((k + 1) * _CHUNK, n))
    images[idx[0] : idx[-1] + 1] = _render_chunk(p, idx, image_size, rng(seed, _STREAM_NOISE, k))

  # numpy releases the GIL inside ufunc loops, so threads give a real speed-up;
  # chunks are independent (own noise stream), so the result is thread-safe
  # and identical for any worker count.
  n_chunks = -(-n // _CHUNK)
  workers = max(1, min(_MAX_WORKERS, os.cpu_count() or 1, n_chunks))
  if workers == 1:
    for k in range(n_chunks):
      render(k)
  else:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      list(pool.map(render, range(n_chunks)))
  return {
      'image': images,
      'identity': p['identity'].astype(np.int64),
      'gender': p['gender'].astype(np.int64),
      'smiling': p['smiling'].astype(np.int64),
  }
