"""Array-only evaluation metrics (accuracy, privacy ranks, image quality; LPIPS in ``lpips``) and the
typed result every evaluator returns (`results`).

Nothing in this package may import ``privjax.models``, ``privjax.train`` or ``privjax.data``.
"""
