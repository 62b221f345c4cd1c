"""What a split costs: `analysis` measures each cut (jax), `report` renders the rows (no jax).

The command is `privjax cost` (privjax.commands.cost). This package's `__init__` imports nothing, so
rendering a cost table loads no jax.
"""
