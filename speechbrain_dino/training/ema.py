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
    """``teacher ← momentum · teacher + (1 − momentum) · student``, in place.

    Parameters are matched by name (the teacher is a deep copy of the unwrapped student; a
    DDP/DataParallel student is unwrapped here). Floating-point buffers (BatchNorm running
    statistics) get the same EMA, so the teacher's normalisation statistics average the same students
    as its weights; integer buffers (``num_batches_tracked``) are copied.
    """
    student = unwrap_parallel(student)
    teacher_params, student_params = _matching_tensors(
        list(teacher.named_parameters()), list(student.named_parameters())
    )
    teacher_buffers, student_buffers = _matching_tensors(
        list(teacher.named_buffers()), list(student.named_buffers())
    )
    float_pairs = [(t, s) for t, s in zip(teacher_buffers, student_buffers) if t.is_floating_point()]
    targets = teacher_params + [t for t, _ in float_pairs]
    sources = student_params + [s for _, s in float_pairs]
    if targets:
        torch._foreach_mul_(targets, momentum)
        torch._foreach_add_(targets, sources, alpha=1.0 - momentum)
    for teacher_buffer, student_buffer in zip(teacher_buffers, student_buffers):
        if not teacher_buffer.is_floating_point():
            teacher_buffer.copy_(student_buffer)
