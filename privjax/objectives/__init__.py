"""Losses of the joint objective: `cross_entropy` and `contrastive_loss`."""

from privjax.objectives.losses import (
    contrastive_from_distances,
    contrastive_loss,
    cross_entropy,
    pair_distances_squared,
)
