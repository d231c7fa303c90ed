"""The DINO objective: projection head, loss with centring and sharpening, collapse diagnosis.

Shapes: ``B`` utterances per batch, ``G`` global crops (seen by teacher and student), ``V >= G``
crops seen by the student (the first ``G`` of them are the global crops), ``K`` prototypes.
Crops are stacked view-major: rows ``[v * B, (v + 1) * B)`` hold view ``v`` of the ``B`` utterances.
Hyperparameter defaults are the paper's (Cho et al., Interspeech 2022, the authors' recipe; see
``docs/method.md``). The teacher's EMA update is :func:`speechbrain_dino.training.ema.ema_update_`.
"""
from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Set, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from speechbrain_dino.training.mlp import build_mlp, flatten_embeddings

#: ``DINOHead(prototypes=...)``: trained, or kept at their random start.
PROTOTYPE_MODES = ("learnable", "fixed")


class HeadOutput(NamedTuple):
    """What the head computes: ``logits`` ``[N, K]`` (cosines to the prototypes when the last
    layer is normalised), ``bottleneck`` ``[N, P]`` (L2-normalised) and, for heads with an
    expander, ``expander`` ``[N, E]`` (else None)."""

    logits: torch.Tensor
    bottleneck: torch.Tensor
    expander: Optional[torch.Tensor]


class DINOHead(nn.Module):
    """[BatchNorm] → MLP → [expander → linear] → bottleneck → L2 norm → weight-normalised prototypes.

    Arguments
    ---------
    input_size : int
        Embedding size ``D``.
    hidden_size, bottleneck_size, n_prototypes, n_layers : int
        Paper: D → 2048 → 2048 → 256, K = 65536 (three Linear layers before the prototypes).
    use_bn : bool
        BatchNorm1d after each hidden Linear (off in the paper; on in wespeaker's and 3D-Speaker's
        ECAPA recipes, a remedy against collapse).
    norm_last_layer : bool
        Fix the prototype magnitudes ``g`` at 1 (untrained), so the logits are cosines.
    input_bn : bool
        BatchNorm1d on the embedding before the MLP (wespeaker normalises the embedding this way).
        Only the head sees it: the exported embedding is the backbone's.
    expander_size : int, optional
        RDINO's head: the MLP ends in an ``E``-dimensional expander (RDINO: 8192), followed by a
        Linear to the bottleneck; the regulariser reads the expander (``HeadOutput.expander``).
    prototypes : str
        ``learnable`` (DINO; SDPN as the paper and 3D-Speaker's current sv-sdpn have it): the
        prototype layer trains; ``fixed``: it stays at its random start (3D-Speaker's first
        sv-sdpn release kept its prototype matrix out of the optimiser).
    prototype_weight_decay : bool
        Whether weight decay applies to the prototypes (DINO: yes; 3D-Speaker's SDPN: no), see
        :meth:`no_weight_decay`.

    The prototype layer uses ``torch.nn.utils.parametrizations.weight_norm``: its parameters are
    ``last_layer.parametrizations.weight.original0`` (g, ``[K, 1]``) and ``...original1`` (v), and it
    survives ``copy.deepcopy`` and ``state_dict`` round trips, so a teacher is a deep copy.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 2048,
        bottleneck_size: int = 256,
        n_prototypes: int = 65536,
        n_layers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        input_bn: bool = False,
        expander_size: Optional[int] = None,
        prototypes: str = "learnable",
        prototype_weight_decay: bool = True,
    ) -> None:
        super().__init__()
        if prototypes not in PROTOTYPE_MODES:
            raise ValueError(f"prototypes must be one of {PROTOTYPE_MODES}, got {prototypes!r}")
        self.prototype_weight_decay = prototype_weight_decay
        self.input_norm = nn.BatchNorm1d(input_size) if input_bn else nn.Identity()
        mlp_output = expander_size or bottleneck_size
        self.mlp = build_mlp(input_size, hidden_size, mlp_output, n_layers, use_bn, nn.GELU)
        self.expander_to_bottleneck = nn.Linear(expander_size, bottleneck_size) if expander_size else None
        self.apply(_init_linear)
        self.last_layer = weight_norm(nn.Linear(bottleneck_size, n_prototypes, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)
        if prototypes == "fixed":
            self.last_layer.requires_grad_(False)

    def forward(self, embeddings: torch.Tensor) -> HeadOutput:
        """``[N, D]`` or ``[N, 1, D]`` embeddings → prototype logits, bottleneck, expander."""
        hidden = self.mlp(self.input_norm(flatten_embeddings(embeddings)))
        expander = None
        if self.expander_to_bottleneck is not None:
            expander, hidden = hidden, self.expander_to_bottleneck(hidden)
        bottleneck = F.normalize(hidden, dim=-1)
        return HeadOutput(self.last_layer(bottleneck), bottleneck, expander)

    def no_weight_decay(self) -> Set[str]:
        """Names of parameters the optimiser must not decay (read by
        :func:`~speechbrain_dino.training.parameters.param_groups_for_weight_decay`)."""
        if self.prototype_weight_decay:
            return set()
        return {f"last_layer.{name}" for name, _ in self.last_layer.named_parameters()}

    def cancel_last_layer_gradients(self) -> None:
        """Drops the prototype layer's gradients (call after backward while it is frozen).

        Gradients become ``None`` rather than zero, so Adam(W) applies neither a momentum step nor
        weight decay to the layer.
        """
        for parameter in self.last_layer.parameters():
            parameter.grad = None


def _init_linear(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) weights and zero biases for Linear layers, as in DINO."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DINOLossOutput(NamedTuple):
    """The loss and detached 0-dim diagnostics (nats) from the same softmaxes.

    ``stats`` keys: ``teacher_entropy`` (mean per-sample entropy of the teacher distribution),
    ``teacher_mean_entropy`` (entropy of the batch-mean teacher distribution),
    ``teacher_kl_uniform`` (KL(batch mean || uniform) = ln K − teacher_mean_entropy),
    ``teacher_max_share`` (largest mass of one prototype in the batch mean, in [1/K, 1]),
    ``student_entropy`` (mean per-sample entropy of the student distribution). Teacher statistics
    are over this process's ``G * B`` teacher rows.
    """

    loss: torch.Tensor
    stats: Dict[str, torch.Tensor]


class DINOLoss(nn.Module):
    """Cross-entropy between the sharpened, balanced teacher and the student over crop pairs.

    Arguments
    ---------
    n_prototypes : int
        ``K``, the head's output size.
    n_global_crops : int
        ``G``: crops seen by the teacher. Paper: 2; SDPN: 1.
    student_temperature : float
        Paper: 0.1 (the teacher temperature is passed per step, see ``DINOSchedule``).
    center_momentum : float
        EMA momentum of the centre. Paper: 0.9.
    targets : str
        How the teacher's targets are kept from collapsing: ``"centering"`` (DINO: subtract the
        centre, an EMA of the teacher logits, before the sharpened softmax) or ``"sinkhorn"``
        (SDPN, after SwAV: the sharpened softmax balanced by Sinkhorn-Knopp so that every
        prototype gets an equal share of the batch, see :func:`sinkhorn_knopp`).
    sinkhorn_iterations : int
        Sinkhorn-Knopp iterations (SDPN: 3).
    student_sees_global : bool
        True (DINO): the first ``G`` student views are the teacher's crops, and a student view is
        never compared with the teacher's output on the same crop. False (SDPN): the student saw
        other crops only, and every (teacher view, student view) pair counts.

    The centre ``[1, K]`` is a buffer, so it is part of ``state_dict`` (add the loss module to the
    checkpointer). :meth:`forward` does not move it: call :meth:`update_center` once per training
    step with the teacher logits, never on validation batches.
    """

    center: torch.Tensor

    def __init__(
        self,
        n_prototypes: int,
        n_global_crops: int = 2,
        student_temperature: float = 0.1,
        center_momentum: float = 0.9,
        targets: str = "centering",
        sinkhorn_iterations: int = 3,
        student_sees_global: bool = True,
    ) -> None:
        super().__init__()
        if targets not in TARGET_METHODS:
            raise ValueError(f"targets must be one of {TARGET_METHODS}, got {targets!r}")
        self.n_prototypes = n_prototypes
        self.n_global_crops = n_global_crops
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.targets = targets
        self.sinkhorn_iterations = sinkhorn_iterations
        self.student_sees_global = student_sees_global
        self.register_buffer("center", torch.zeros(1, n_prototypes))

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, teacher_temperature: float
    ) -> DINOLossOutput:
        """Mean over all (teacher view g, student view v ≠ g) pairs of the batch-mean cross-entropy.

        Arguments
        ---------
        student_logits : torch.Tensor
            ``[V * B, K]``, view-major (with ``student_sees_global``, the first ``G`` views are
            the teacher's crops).
        teacher_logits : torch.Tensor
            ``[G * B, K]``, view-major (no gradient flows into them).
        teacher_temperature : float
            Sharpening temperature of the teacher softmax.
        """
        n_views, batch_size = self._view_counts(student_logits, teacher_logits)
        n_global = self.n_global_crops
        teacher_probs = self.teacher_targets(teacher_logits, teacher_temperature)
        student_log_probs = F.log_softmax(student_logits.float() / self.student_temperature, dim=-1)
        pair_cross_entropy = -torch.einsum(
            "gbk,vbk->gv",
            teacher_probs.view(n_global, batch_size, -1),
            student_log_probs.view(n_views, batch_size, -1),
        ) / batch_size  # [G, V]
        if self.student_sees_global:
            same_crop = torch.eye(n_global, n_views, dtype=torch.bool, device=student_logits.device)
            loss = pair_cross_entropy.masked_fill(same_crop, 0.0).sum() / (n_global * (n_views - 1))
        else:
            loss = pair_cross_entropy.mean()
        return DINOLossOutput(loss, self._statistics(teacher_probs, student_log_probs.detach()))

    @torch.no_grad()
    def teacher_targets(self, teacher_logits: torch.Tensor, teacher_temperature: float) -> torch.Tensor:
        """``[G * B, K]`` target distributions from the teacher logits (see ``targets``)."""
        logits = teacher_logits.detach().float()
        if self.targets == "centering":
            return F.softmax((logits - self.center) / teacher_temperature, dim=-1)
        return sinkhorn_knopp(F.softmax(logits / teacher_temperature, dim=-1), self.sinkhorn_iterations)

    def _view_counts(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> Tuple[int, int]:
        """Checks the shapes; returns ``(V, B)``."""
        student_rows, teacher_rows = student_logits.shape[0], teacher_logits.shape[0]
        if teacher_rows == 0 or teacher_rows % self.n_global_crops:
            raise ValueError(
                f"teacher_logits has {teacher_rows} rows, not a positive multiple of "
                f"n_global_crops={self.n_global_crops}"
            )
        batch_size = teacher_rows // self.n_global_crops
        n_views = student_rows // batch_size
        least = max(2, self.n_global_crops) if self.student_sees_global else 1
        if student_rows % batch_size or n_views < least:
            raise ValueError(
                f"student_logits has {student_rows} rows; expected V * {batch_size} rows with "
                f"V >= {least} views"
            )
        return n_views, batch_size

    @torch.no_grad()
    def _statistics(
        self, teacher_probs: torch.Tensor, student_log_probs: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Collapse diagnostics from ``[G*B, K]`` teacher probabilities and ``[V*B, K]`` student log-probs."""
        mean_teacher = teacher_probs.mean(dim=0)
        mean_entropy = torch.special.entr(mean_teacher).sum()
        return {
            "teacher_entropy": torch.special.entr(teacher_probs).sum(dim=-1).mean(),
            "teacher_mean_entropy": mean_entropy,
            "teacher_kl_uniform": math.log(self.n_prototypes) - mean_entropy,
            "teacher_max_share": mean_teacher.max(),
            "student_entropy": torch.special.entr(student_log_probs.exp()).sum(dim=-1).mean(),
        }

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """``center ← m · center + (1 − m) · mean of teacher_logits [N, K]`` over rows (all ranks).

        Under an initialised ``torch.distributed`` group the row sums and counts are all-reduced
        first, so every rank holds the same centre (exact even with uneven batches).
        """
        logits = teacher_logits.detach().float()
        sum_and_count = torch.cat([logits.sum(dim=0), logits.new_tensor([logits.shape[0]])])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sum_and_count)
        batch_center = sum_and_count[:-1] / sum_and_count[-1]
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)


TARGET_METHODS = ("centering", "sinkhorn")


@torch.no_grad()
def sinkhorn_knopp(probs: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Balances ``[N, K]`` assignment probabilities so every prototype gets mass ``N / K``.

    Alternately rescales the prototype columns to equal totals and the rows to sum to one
    (``iterations`` times; SwAV and SDPN use 3). After the last (row) step every row is a
    distribution; the column totals approach ``N / K`` as the iterations grow. Under an
    initialised ``torch.distributed`` group the column totals and ``N`` are summed over ranks, so
    the balance is over the global batch.

    Returns
    -------
    torch.Tensor
        ``[N, K]``, rows summing to 1.
    """
    distributed = dist.is_available() and dist.is_initialized()
    assignments = probs.double()
    rows = torch.tensor(float(assignments.shape[0]), dtype=torch.float64, device=probs.device)
    if distributed:
        dist.all_reduce(rows)
    n_prototypes = assignments.shape[1]
    for _ in range(iterations):
        column_totals = assignments.sum(dim=0, keepdim=True)
        if distributed:
            dist.all_reduce(column_totals)
        assignments = assignments / column_totals.clamp(min=1e-30) * (rows / n_prototypes)
        assignments = assignments / assignments.sum(dim=1, keepdim=True)
    return assignments.to(probs.dtype)


def diagnose_collapse(
    stats: Dict[str, Union[torch.Tensor, float]],
    n_prototypes: int,
    uniform_entropy_fraction: float = 0.97,
    min_mean_entropy_fraction: float = 0.1,
    max_prototype_share: float = 0.5,
) -> Optional[str]:
    """Names a DINO collapse from :class:`DINOLossOutput` stats, or returns ``None``.

    Two modes are detected:

    - uniform outputs: teacher per-sample entropy ≥ ``uniform_entropy_fraction`` · ln K (the loss
      then sits at ln K, 11.09 for K = 65536);
    - one or few prototypes take all mass: entropy of the batch-mean teacher distribution
      < ``min_mean_entropy_fraction`` · ln K, or one prototype holds > ``max_prototype_share`` of it.

    A freshly initialised model is close to uniform, so call this only after the first epochs.
    """
    log_k = math.log(n_prototypes)
    teacher_entropy = float(stats["teacher_entropy"])
    mean_entropy = float(stats["teacher_mean_entropy"])
    max_share = float(stats["teacher_max_share"])
    if teacher_entropy >= uniform_entropy_fraction * log_k:
        return (
            f"DINO collapse to uniform outputs: teacher per-sample entropy {teacher_entropy:.2f} nats "
            f"is close to ln K = {log_k:.2f} (the loss stays near ln K). Remedies: lower the teacher "
            "temperature (or shorten its warm-up), use BatchNorm in the head (use_bn), a larger batch, "
            "a lower learning rate or a longer LR warm-up."
        )
    if mean_entropy < min_mean_entropy_fraction * log_k or max_share > max_prototype_share:
        return (
            f"DINO collapse onto few prototypes: the batch-mean teacher distribution has entropy "
            f"{mean_entropy:.2f} nats (ln K = {log_k:.2f}) and its largest prototype holds "
            f"{max_share:.0%} of the mass. Remedies: check update_center runs every training step, "
            "lower the centre momentum (a faster centre), raise the teacher temperature slightly, "
            "use BatchNorm in the head (use_bn), a larger batch, a lower learning rate."
        )
    return None
