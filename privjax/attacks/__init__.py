"""Attackers on frozen intermediate features (privacy evaluation).

Families: ``linear`` (softmax regression, L-BFGS), ``mlp``, ``transfer``
(re-train the layers after the cut, the paper's attacker), ``pca_linear`` and
``pca_mlp`` (the attacker's own PCA in front of linear / MLP), the
reconstruction decoder and white-box inversion (``inversion``); on top of them,
re-identification of reconstructions (``reidentify``), open-set identity
with a learned embedding (``open_set``), a pretrained face recogniser
(``face_recognition``, the ``face`` extra) and attacks that pool many uploads
of one account (``accounts``). Everything here works on plain arrays and must not
import ``privjax.train`` or ``privjax.data``.
"""

from privjax.attacks.accounts import (
    account_groups,
    averaged_uploads,
    pooled_embedding_top1,
    pooled_top1,
)
from privjax.attacks.common import (
    Attacker,
    AttackResult,
    ClassMap,
    Standardizer,
    evaluate_attacker,
    fit_standardizer,
    train_val_split,
)
from privjax.attacks.face_recognition import (
    WHOLE_IMAGE,
    Alignment,
    FaceRecognizer,
    fit_alignment,
)
from privjax.attacks.inversion import invert, total_variation, tune_tv_weight
from privjax.attacks.linear import LinearAttacker, fit_linear
from privjax.attacks.mlp import MLP, fit_mlp, mlp_factory
from privjax.attacks.open_set import (
    fit_embedder,
    gallery_probe_split,
    mlp_embedder,
    open_set_identity,
    tar_at_far,
)
from privjax.attacks.pca import PCAAttacker, fit_pca_attacker
from privjax.attacks.reconstruction import Decoder, fit_decoder, save_image_grid
from privjax.attacks.registry import ATTACKERS, run_attack, strongest, summarize
from privjax.attacks.reidentify import fit_identity_classifier, reidentify
from privjax.attacks.transfer import ModuleAttacker, fit_module

__all__ = [
    "ATTACKERS",
    "WHOLE_IMAGE",
    "Alignment",
    "AttackResult",
    "Attacker",
    "ClassMap",
    "Decoder",
    "FaceRecognizer",
    "LinearAttacker",
    "MLP",
    "ModuleAttacker",
    "PCAAttacker",
    "Standardizer",
    "account_groups",
    "averaged_uploads",
    "evaluate_attacker",
    "fit_decoder",
    "fit_embedder",
    "fit_identity_classifier",
    "fit_linear",
    "fit_alignment",
    "fit_mlp",
    "fit_module",
    "fit_pca_attacker",
    "fit_standardizer",
    "gallery_probe_split",
    "invert",
    "mlp_embedder",
    "mlp_factory",
    "open_set_identity",
    "pooled_embedding_top1",
    "pooled_top1",
    "reidentify",
    "run_attack",
    "save_image_grid",
    "strongest",
    "summarize",
    "tar_at_far",
    "total_variation",
    "train_val_split",
    "tune_tv_weight",
]
