"""On-device privacy transforms (PCA projection, Gaussian noise).

Must not import ``privjax.models``, ``privjax.train`` or ``privjax.data``.
"""

from privjax.privacy.transforms import (
    PCA,
    TransformSpec,
    add_gaussian_noise,
    fit_pca,
    load_pca,
    parse_transform,
    save_pca,
)

__all__ = [
    "PCA",
    "TransformSpec",
    "add_gaussian_noise",
    "fit_pca",
    "load_pca",
    "parse_transform",
    "save_pca",
]
