"""The label-free systems the studies train: a preset of ``hparams/demo/`` and its overrides each.

:mod:`bench.objectives` trains them all at one budget; :mod:`bench.fidelity_study` trains some
with an older checkout and with this one.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

#: The study's speed unit, and the system each DINO fix changes one setting of.
PAPER_DINO_SYSTEM = "DINO (paper settings)"
#: Small DINO as the paper has it (its views share their in-batch babble, as before release 0.2).
PAPER_DINO = {"augment": {"independent_babble": False}}
#: name -> (preset in hparams/demo/, overrides of it)
SYSTEMS: Dict[str, Tuple[str, Mapping]] = {
    "contrastive": ("contrastive_ecapa.yaml", {}),
    PAPER_DINO_SYSTEM: ("dino_ecapa.yaml", PAPER_DINO),
    "+ independent babble": ("dino_ecapa.yaml", {}),
    "+ whole-utterance, spread crops": ("dino_ecapa.yaml", {**PAPER_DINO, "crops": {"window_factor": None, "spread_global": True}}),
    "+ teacher horizon 0.5 epoch": ("dino_ecapa.yaml", {**PAPER_DINO, "schedule": {"teacher_momentum_horizon_epochs": 0.5}}),
    "+ LR scaling rule": ("dino_ecapa.yaml", {**PAPER_DINO, "schedule": {"lr_per_256": 0.005, "base_lr": None}}),
    "+ BatchNorm head and embedding": ("dino_ecapa.yaml", {**PAPER_DINO, "student_head": {"use_bn": True, "input_bn": True}}),
    "+ clean teacher crops": ("dino_ecapa.yaml", {**PAPER_DINO, "teacher_augmentation": "clean"}),
    "+ student exported": ("dino_ecapa.yaml", {**PAPER_DINO, "export_encoder": "student"}),
    "DINO, babble + whole-utterance crops": ("dino_ecapa.yaml", {"crops": {"window_factor": None, "spread_global": True}}),
    "DINO, all fixes": ("dino_ecapa.yaml", {
        "crops": {"window_factor": None, "spread_global": True},
        "schedule": {"teacher_momentum_horizon_epochs": 0.5, "lr_per_256": 0.005, "base_lr": None},
        "student_head": {"use_bn": True, "input_bn": True}, "teacher_augmentation": "clean"}),
    "RDINO": ("rdino_ecapa.yaml", {}),
    "SDPN": ("sdpn_ecapa.yaml", {}),
    "SDPN, 256 prototypes": ("sdpn_ecapa.yaml", {"n_prototypes": 256}),
    "DINO + cosine (Hyperion)": ("dino_cosine_ecapa.yaml", {}),
    "SDPN + contrastive term": ("sdpn_ecapa.yaml", {"contrastive_weight": 1.0, "contrastive_decay_fraction": None}),
}
#: A system trained in two parts: the first gets half the budget (whole epochs), its export starts
#: the second, which gets the time the first left (so both together cost one budget).
WARM_STARTS: Dict[str, Tuple[str, str]] = {
    "SDPN from contrastive": ("contrastive", "SDPN"),
    "SDPN + contrastive term from contrastive": ("contrastive", "SDPN + contrastive term"),
}
