"""Stateless per-step schedules: DINO pretraining and two-phase AAM fine-tuning.

Every value is a pure function of the global optimiser step, so a run resumed from a checkpoint
continues on exactly the same curve as an uninterrupted one (only the step count needs saving).
Defaults follow the authors' recipe of the paper (Cho et al., Interspeech 2022; ``docs/method.md``)
unless noted otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Dict, NamedTuple, Optional

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


def momentum_for_horizon(horizon_steps: float) -> float:
    """EMA momentum ``m = 1 - 1 / h`` whose averaging horizon is ``h`` steps.

    An EMA with momentum ``m`` weighs the update of ``k`` steps ago by ``(1 - m) m^k``: the mean age
    of what it holds is ``m / (1 - m) ≈ h`` steps, and after ``h`` steps the initial value keeps
    a weight ``m^h ≈ e^-1``.
    """
    if horizon_steps < 1:
        raise ValueError(f"an EMA horizon must be at least one step, got {horizon_steps}")
    return 1.0 - 1.0 / horizon_steps


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

    @classmethod
    def from_epochs(
        cls,
        epochs: int,
        steps_per_epoch: int,
        teacher_momentum_horizon_epochs: Optional[float] = None,
        lr_per_256: Optional[float] = None,
        global_batch_size: Optional[int] = None,
        **values: float,
    ) -> "DINOSchedule":
        """:meth:`StepSchedule.from_epochs`, with two settings relative to the run:

        - ``teacher_momentum_horizon_epochs``: the teacher's starting EMA momentum is
          ``1 - 1 / (horizon_epochs * steps_per_epoch)``, so the teacher averages the students of
          about that many epochs whatever the corpus and batch size (see
          :func:`momentum_for_horizon`); it still rises to ``final_teacher_momentum``. The paper's
          constant 0.996 is a horizon of 250 steps: a fraction of one VoxCeleb2 epoch, but most of
          a short run on a small corpus.
        - ``lr_per_256``: the linear scaling rule, ``base_lr = lr_per_256 * global_batch_size / 256``,
          with ``global_batch_size`` the utterances per optimiser step over all processes
          (per-process batch x world size x gradient accumulation). Paper: 0.005 per 256.
        """
        if teacher_momentum_horizon_epochs is not None:
            values["teacher_momentum"] = momentum_for_horizon(teacher_momentum_horizon_epochs * steps_per_epoch)
        if lr_per_256 is not None:
            if not global_batch_size:
                raise ValueError("lr_per_256 needs the global batch size")
            values["base_lr"] = lr_per_256 * global_batch_size / 256
        elif "base_lr" in values and values["base_lr"] is None:
            raise ValueError("schedule: set lr_per_256 (the linear scaling rule) or base_lr")
        return super().from_epochs(epochs, steps_per_epoch, **values)

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

    The phases are shares of the run (:meth:`from_epochs`), so they keep their proportions when
    the run's length comes from the labels (:func:`~speechbrain_dino.training.fine_tuning.budgeted_epochs`).

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

    #: The ``*_share`` arguments of :meth:`from_epochs`: each sets the ``*_steps`` field of the same name.
    SHARES = ("frozen_share", "warmup_share", "margin_warmup_share")

    total_steps: int
    frozen_steps: int = 0
    head_lr: float = 0.002
    full_lr: float = 0.0005
    final_lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 1e-4
    margin: float = 0.2
    margin_warmup_steps: int = 0

    @classmethod
    def from_epochs(cls, epochs: int, steps_per_epoch: int, **values: float) -> "FineTuneSchedule":
        """The schedule of ``epochs`` epochs of ``steps_per_epoch`` steps; ``frozen_share``,
        ``warmup_share`` and ``margin_warmup_share`` (shares of the run, default 0) become step
        counts, other ``values`` are passed as they are."""
        total = epochs * steps_per_epoch
        steps = {name[: -len("_share")] + "_steps": round(values.pop(name, 0.0) * total) for name in cls.SHARES}
        return cls(total_steps=total, **steps, **values)

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


@dataclass(frozen=True)
class TermWeight:
    """The weight of an auxiliary loss term over the run, from the fraction of the run done.

    Relative to the run (not in epochs or steps), so a term behaves the same in a 5-minute run
    and a 70-epoch one.

    Arguments
    ---------
    weight : float
        The weight after the warm-up.
    start_weight : float, optional
        Weight at step 0, ramped linearly to ``weight`` over the first ``warmup_fraction`` of the
        run (None: no ramp). RDINO: 0.05 -> 0.2 over the first 10 of 70 epochs.
    warmup_fraction : float
        Length of that ramp, as a fraction of the run.
    decay_fraction : float, optional
        When set, the weight falls along half a cosine from ``weight`` (at the end of the warm-up)
        to ``final_weight``, reached at this fraction of the run and kept after it: a term that
        helps early and hands over to the main loss (e.g. a contrastive start).
    final_weight : float
        See ``decay_fraction``.
    """

    weight: float = 1.0
    start_weight: Optional[float] = None
    warmup_fraction: float = 0.0
    decay_fraction: Optional[float] = None
    final_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {self.warmup_fraction}")
        if self.decay_fraction is not None and not self.warmup_fraction <= self.decay_fraction <= 1.0:
            raise ValueError(
                f"decay_fraction must be in [warmup_fraction, 1], got {self.decay_fraction}"
            )

    @property
    def always_zero(self) -> bool:
        """True when the weight is 0 at every step (the term is switched off)."""
        return self.weight == 0 and not self.start_weight and (self.decay_fraction is None or not self.final_weight)

    def value(self, step: int, total_steps: int) -> float:
        """The weight at optimiser step ``step`` of ``total_steps``."""
        progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
        if self.start_weight is not None and progress < self.warmup_fraction:
            return self.start_weight + (self.weight - self.start_weight) * progress / self.warmup_fraction
        if self.decay_fraction is None:
            return self.weight
        if progress >= self.decay_fraction:
            return self.final_weight
        decayed = max(progress - self.warmup_fraction, 0.0) / (self.decay_fraction - self.warmup_fraction)
        return self.final_weight + 0.5 * (self.weight - self.final_weight) * (1.0 + math.cos(math.pi * decayed))
