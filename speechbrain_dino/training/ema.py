"""The teacher as an exponential moving average (EMA) of the student, matched by name."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from speechbrain_dino.training.parameters import unwrap_parallel


def _matching_tensors(
    teacher_named: List[Tuple[str, torch.Tensor]], student_named: List[Tuple[str, torch.Tensor]]
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Pairs teacher and student tensors by name; raises ``ValueError`` if the names differ."""
    teacher_names = [name for name, _ in teacher_named]
    student_names = [name for name, _ in student_named]
    if teacher_names != student_names:
        mismatch = sorted(set(teacher_names) ^ set(student_names)) or ["(same names, different order)"]
        raise ValueError(f"teacher and student differ in parameters/buffers: {mismatch[:5]}")
    return [tensor for _, tensor in teacher_named], [tensor for _, tensor in student_named]


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher ← momentum · teacher + (1 − momentum) · student`` on the parameters, in place.

    Parameters are matched by name (the teacher is a deep copy of the unwrapped student; a
    DDP/DataParallel student is unwrapped here); buffers must match by name too. Only parameters
    are averaged, as in the reference code (facebookresearch/dino ``main_dino.py``, 3D-Speaker's
    ``train_rdino.py`` / ``train_sdpn.py``): the teacher's BatchNorm running statistics are its
    own, updated by its forward passes on the teacher crops.
    """
    student = unwrap_parallel(student)
    teacher_params, student_params = _matching_tensors(
        list(teacher.named_parameters()), list(student.named_parameters())
    )
    _matching_tensors(list(teacher.named_buffers()), list(student.named_buffers()))
    if teacher_params:
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)
