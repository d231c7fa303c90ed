"""Stateless per-step schedules: DINO pretraining and two-phase AAM fine-tuning.

Every value is a pure function of the global optimiser step, so a run resumed from a checkpoint
continues on exactly the same curve as an uninterrupted one (only the step count needs saving).
Defaults follow the authors' recipe of the paper (Cho et al., Interspeech 2022; ``docs/method.md``)
unless noted otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Dict, NamedTuple

import torch

from speechbrain_dino.training.parameters import APPLY_WEIGHT_DECAY


def set_lr_and_weight_decay(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """LR on every parameter group; weight decay on decayed groups, 0 on those marked otherwise."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["weight_decay"] = weight_decay if group.get(APPLY_WEIGHT_DECAY, True) else 0.0


def epochs_to_steps(steps_per_epoch: int, **epochs: float) -> Dict[str, int]:
    """``{"warmup_epochs": 1.5}`` -> ``{"warmup_steps": round(1.5 * steps_per_epoch)}``."""
    return {
        name[: -len("_epochs")] + "_steps": round(count * steps_per_epoch) for name, count in epochs.items()
    }


def linear_warmup(step: int, start: float, end: float, warmup_steps: int) -> float:
    """Linear ramp from ``start`` (step 0) to ``end`` (step ``warmup_steps`` and after).

    With ``warmup_steps <= 0`` or ``start == end`` the value is the constant ``end``.
    Used for the teacher temperature (wespeaker: 0.04 → 0.07; the paper: 0.04 constant).
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * max(step, 0) / warmup_steps


def cosine_schedule(
    step: int,
    base_value: float,
    final_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start_value: float = 0.0,
) -> float:
    """Linear warm-up to ``base_value``, then half a cosine down (or up) to ``final_value``.

    ``step`` in ``[0, warmup_steps)`` ramps linearly from ``warmup_start_value`` to ``base_value``;
    from ``warmup_steps`` to ``total_steps`` the value follows
    ``final + (base - final) * (1 + cos(pi * progress)) / 2``; at and after ``total_steps`` it is
    ``final_value``.
    """
    if step < warmup_steps:
        return linear_warmup(step, warmup_start_value, base_value, warmup_steps)
    cosine_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / cosine_steps, 1.0)
    return final_value + 0.5 * (base_value - final_value) * (1.0 + math.cos(math.pi * progress))


class ScheduleValues(NamedTuple):
    """All scheduled quantities at one step."""

    lr: float
    weight_decay: float
    teacher_momentum: float
    teacher_temperature: float
    freeze_last_layer: bool


class StepSchedule:
    """A schedule of the global optimiser step, built from epoch counts by :meth:`from_epochs`."""

    #: The ``*_epochs`` arguments of :meth:`from_epochs` and their defaults; each sets the
    #: ``*_steps`` field of the same name.
    EPOCH_DEFAULTS: ClassVar[Dict[str, float]] = {}

    @classmethod
    def from_epochs(cls, epochs: int, steps_per_epoch: int, **values: float) -> "StepSchedule":
        """The schedule of ``epochs`` epochs of ``steps_per_epoch`` steps; ``*_epochs`` counts
        (see :attr:`EPOCH_DEFAULTS`) become step counts, other ``values`` are passed as they are."""
        counts = {name: values.pop(name, default) for name, default in cls.EPOCH_DEFAULTS.items()}
        return cls(total_steps=epochs * steps_per_epoch, **epochs_to_steps(steps_per_epoch, **counts), **values)


@dataclass(frozen=True)
class DINOSchedule(StepSchedule):
    """LR, weight decay, teacher momentum and temperature, last-layer freezing, by global step.

    Arguments
    ---------
    total_steps : int
        Optimiser steps of the whole run (epochs × steps per epoch); the cosine curves end here.
    base_lr : float
        Peak LR after warm-up. Paper: 0.005 × batch / 256, with batch 96 → 0.001875.
    final_lr : float
        LR at the end of the cosine decay. Paper: 1e-6.
    warmup_steps : int
        Linear LR warm-up from 0. Paper: 10 epochs (see :meth:`from_epochs`).
    weight_decay, final_weight_decay : float
        Weight decay on the decayed groups, cosine from the first to the second (equal: constant).
        Paper: 1e-4, constant, none on biases and norms.
    teacher_momentum, final_teacher_momentum : float
        EMA momentum of the teacher, cosine per iteration. Paper: 0.996 → 1.0.
    teacher_temperature, final_teacher_temperature : float
        Teacher softmax temperature, linear warm-up from the first to the second over
        ``teacher_temperature_warmup_steps``. Paper: 0.04 constant; wespeaker: 0.04 → 0.07.
    teacher_temperature_warmup_steps : int
        Length of the teacher temperature warm-up.
    freeze_last_layer_steps : int
        Steps during which the head's last layer gets no update. Paper: the first epoch.
    """

    EPOCH_DEFAULTS = {"warmup_epochs": 10, "freeze_last_layer_epochs": 1, "teacher_temperature_warmup_epochs": 0}

    total_steps: int
    base_lr: float = 0.005 * 96 / 256
    final_lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 1e-4
    final_weight_decay: float = 1e-4
    teacher_momentum: float = 0.996
    final_teacher_momentum: float = 1.0
    teacher_temperature: float = 0.04
    final_teacher_temperature: float = 0.04
    teacher_temperature_warmup_steps: int = 0
    freeze_last_layer_steps: int = 0

    def values(self, step: int) -> ScheduleValues:
        """All scheduled quantities at global optimiser step ``step`` (0-based)."""
        return ScheduleValues(
            lr=cosine_schedule(step, self.base_lr, self.final_lr, self.total_steps, self.warmup_steps),
            weight_decay=cosine_schedule(
                step, self.weight_decay, self.final_weight_decay, self.total_steps
            ),
            teacher_momentum=cosine_schedule(
                step, self.teacher_momentum, self.final_teacher_momentum, self.total_steps
            ),
            teacher_temperature=linear_warmup(
                step,
                self.teacher_temperature,
                self.final_teacher_temperature,
                self.teacher_temperature_warmup_steps,
            ),
            freeze_last_layer=step < self.freeze_last_layer_steps,
        )

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> ScheduleValues:
        """Sets LR on every group and weight decay on decayed groups (0 elsewhere); returns the values."""
        values = self.values(step)
        set_lr_and_weight_decay(optimizer, values.lr, values.weight_decay)
        return values


class FineTuneValues(NamedTuple):
    """Scheduled quantities of AAM fine-tuning at one step."""

    lr: float
    weight_decay: float
    margin: float
    backbone_frozen: bool


@dataclass(frozen=True)
class FineTuneSchedule(StepSchedule):
    """Two-phase AAM-softmax fine-tuning on pseudo-labels (the authors' recipe, ``docs/method.md``).

    Phase 1 (``frozen_steps``): only the embedding layer and the classifier learn (the backbone's
    gradients are dropped), LR ``head_lr`` with linear warm-up then cosine to ``final_lr``.
    Phase 2: the whole network, LR ``full_lr`` (lower) cosine to ``final_lr``. The AAM margin
    rises linearly from 0 to ``margin`` over ``margin_warmup_steps`` (margin warm-up).

    Arguments
    ---------
    total_steps, frozen_steps, warmup_steps, margin_warmup_steps : int
        Step counts (see :meth:`from_epochs`).
    head_lr, full_lr, final_lr : float
        Peak LRs of the two phases and the final LR of both.
    weight_decay : float
        On the decayed parameter groups (not biases and norms).
    margin : float
        AAM margin after warm-up. Paper: 0.2 (scale 30 is set on the loss).
    """

    EPOCH_DEFAULTS = {"frozen_epochs": 0, "warmup_epochs": 0, "margin_warmup_epochs": 0}

    total_steps: int
    frozen_steps: int = 0
    head_lr: float = 0.002
    full_lr: float = 0.0005
    final_lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 1e-4
    margin: float = 0.2
    margin_warmup_steps: int = 0

    def __post_init__(self) -> None:
        """The frozen phase lasts at most the whole run."""
        object.__setattr__(self, "frozen_steps", min(self.frozen_steps, self.total_steps))

    def values(self, step: int) -> FineTuneValues:
        """All scheduled quantities at global optimiser step ``step`` (0-based)."""
        frozen = step < self.frozen_steps
        if frozen:
            lr = cosine_schedule(step, self.head_lr, self.final_lr, self.frozen_steps, self.warmup_steps)
        else:
            lr = cosine_schedule(
                step - self.frozen_steps,
                self.full_lr,
                self.final_lr,
                self.total_steps - self.frozen_steps,
                0 if self.frozen_steps else self.warmup_steps,
            )
        margin = linear_warmup(step, 0.0, self.margin, self.margin_warmup_steps)
        return FineTuneValues(lr, self.weight_decay, margin, frozen)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> FineTuneValues:
        """Sets LR on every group and weight decay on decayed groups; returns the values."""
        values = self.values(step)
        set_lr_and_weight_decay(optimizer, values.lr, values.weight_decay)
        return values
