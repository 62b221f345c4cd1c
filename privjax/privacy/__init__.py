"""What the device does to the cut features before they leave it: PCA (`pca`), noise and the
transform specs (`transforms`).

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``.
"""
