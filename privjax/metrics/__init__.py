"""Array-only evaluation metrics (privacy ranks, image quality, accuracy; LPIPS in ``lpips``).

Nothing in this package may import ``privjax.models``, ``privjax.train`` or
``privjax.data``.
"""

from privjax.metrics.classification import (
    binomial_se,
    chance_accuracy,
    majority_accuracy,
    topk_accuracy,
    topk_correct,
)
from privjax.metrics.image_quality import psnr, ssim
from privjax.metrics.rank_privacy import (
    class_ranks,
    log_rank_privacy,
    rank_privacy,
    rank_privacy_reference,
    sample_ranks,
    summarize_ranks,
)

__all__ = [
    "binomial_se",
    "chance_accuracy",
    "majority_accuracy",
    "topk_accuracy",
    "topk_correct",
    "psnr",
    "ssim",
    "class_ranks",
    "log_rank_privacy",
    "rank_privacy",
    "rank_privacy_reference",
    "sample_ranks",
    "summarize_ranks",
]
