"""Training: state, jit-compiled steps, the loop and its checkpoints."""
