"""Memory of the compiled VGG-16 Siamese training step, from XLA's buffer assignment (no run).

    python -m benchmarks.train_memory [--cuts conv4_3,conv5_3,fc6] [--batches 10,64]

Compiles privjax's training step (privjax.train.step.compiled_steps, the demo's Adam and contrastive
settings) for `vgg16` at 224x224 on this machine's backend for each cut, dtype and batch (pairs),
without running it, and prints one JSON line each: the state (parameters + Adam moments, donated:
`alias_GB` of it is reused for the output) and the temporary buffers (activations kept for the
backward pass, gradients, workspace). Other backends assign buffers differently (GPU compiles add
cuDNN workspace), so treat the numbers as estimates for them.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from benchmarks.train_step import compiled_siamese_step
from privjax import models


def step_memory(cut: str, dtype, batch: int, mesh) -> dict:
  replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  model = models.SplitModel('vgg16', cut, 2, rngs=nnx.Rngs(0), dtype=dtype)
  *_, state, train_step = compiled_siamese_step(model, mesh)
  state = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.asarray(a).dtype, sharding=replicated), state
  )
  size = models.get_architecture('vgg16').image_size
  pairs = {
      'image': jax.ShapeDtypeStruct((batch, 2, size, size, 3), jnp.uint8, sharding=data),
      'label': jax.ShapeDtypeStruct((batch, 2), jnp.int32, sharding=data),
      'same': jax.ShapeDtypeStruct((batch,), jnp.float32, sharding=data),
  }
  analysis = train_step.lower(state, pairs).compile().memory_analysis()
  return {
      'cut': cut,
      'dtype': 'bfloat16' if dtype else 'float32',
      'batch_pairs': batch,
      'backend': jax.default_backend(),
      'state_GB': round(analysis.argument_size_in_bytes / 1e9, 3),
      'alias_GB': round(analysis.alias_size_in_bytes / 1e9, 3),
      'temp_GB': round(analysis.temp_size_in_bytes / 1e9, 3),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--cuts', default='conv4_3,conv5_3,fc6')
  parser.add_argument('--batches', default='10,64', help='pairs per step')
  args = parser.parse_args(argv)
  mesh = jax.make_mesh(
      (1,), ('data',), axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices()[:1]
  )
  for cut in args.cuts.split(','):
    for dtype in (None, jnp.bfloat16):
      for batch in (int(b) for b in args.batches.split(',')):
        print(json.dumps(step_memory(cut, dtype, batch, mesh)), flush=True)


if __name__ == '__main__':
  main()
