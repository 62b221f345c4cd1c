"""PNG encoding of the images every privjax builder hands to TFDS.

Builders give TFDS PNG bytes rather than arrays, so TFDS never needs TensorFlow to encode them;
reading decodes them with Pillow.  ``encode_png`` is the one place where those bytes are made, and
the bytes are part of the prepared data: changing them changes every data set prepared from now on
(bump the builders' VERSION).

Must not import TensorFlow, TFDS or anything from privjax.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(tag: bytes, data: bytes) -> bytes:
  return (
      struct.pack('>I', len(data))
      + tag
      + data
      + struct.pack('>I', zlib.crc32(tag + data) & 0xFFFFFFFF)
  )


def _stored_png(image: np.ndarray) -> bytes:
  # Tens of microseconds per image where Pillow's encoder takes ~0.5 ms and would dominate
  # preparing the synthetic data; any PNG decoder (Pillow / OpenCV, as TFDS uses) reads it back
  # losslessly.
  h, w, _ = image.shape
  rows = np.zeros((h, 1 + 3 * w), np.uint8)  # leading 0 = filter type None
  rows[:, 1:] = image.reshape(h, 3 * w)
  header = struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
  return (
      b'\x89PNG\r\n\x1a\n'
      + _chunk(b'IHDR', header)
      + _chunk(b'IDAT', zlib.compress(rows.tobytes(), 0))
      + _chunk(b'IEND', b'')
  )


def encode_png(image: np.ndarray | Image.Image, level: int = 0) -> bytes:
  """PNG bytes of an RGB image (uint8 [H, W, 3] array or Pillow image).

  `level` 0 writes the pixels alone, unfiltered, with stored (uncompressed) deflate: array_record
  compresses records itself, and zlib on noisy pixels is slow for ~10% smaller records.  Levels
  1-9 use Pillow's encoder (adaptive row filters) at that zlib level; it also keeps a Pillow
  image's ICC profile, which photos carry.
  """
  if level == 0:
    return _stored_png(np.asarray(image, np.uint8))
  if isinstance(image, np.ndarray):
    image = Image.fromarray(image)
  buf = io.BytesIO()
  image.save(buf, format='PNG', compress_level=level)
  return buf.getvalue()
