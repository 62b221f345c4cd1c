"""Attackers on frozen intermediate features (privacy evaluation).

Families: ``linear`` (softmax regression, L-BFGS), ``mlp``, ``transfer``
(re-train the layers after the cut, the paper's attacker), ``pca_linear`` and
``pca_mlp`` (the attacker's own PCA in front of linear / MLP) and the
reconstruction decoder. Everything here works on plain arrays and must not
import ``privjax.train`` or ``privjax.data``.
"""

from privjax.attacks.common import (
    Attacker,
    AttackResult,
    ClassMap,
    Standardizer,
    evaluate_attacker,
    fit_standardizer,
    train_val_split,
)
from privjax.attacks.linear import LinearAttacker, fit_linear
from privjax.attacks.mlp import MLP, fit_mlp, mlp_factory
from privjax.attacks.pca import PCAAttacker, fit_pca_attacker
from privjax.attacks.reconstruction import Decoder, fit_decoder, save_image_grid
from privjax.attacks.registry import ATTACKERS, run_attack, strongest, summarize
from privjax.attacks.transfer import ModuleAttacker, fit_module

__all__ = [
    "ATTACKERS",
    "AttackResult",
    "Attacker",
    "ClassMap",
    "Decoder",
    "LinearAttacker",
    "MLP",
    "ModuleAttacker",
    "PCAAttacker",
    "Standardizer",
    "evaluate_attacker",
    "fit_decoder",
    "fit_linear",
    "fit_mlp",
    "fit_module",
    "fit_pca_attacker",
    "fit_standardizer",
    "mlp_factory",
    "run_attack",
    "save_image_grid",
    "strongest",
    "summarize",
    "train_val_split",
]
