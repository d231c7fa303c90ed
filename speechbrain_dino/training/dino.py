"""The DINO objective: projection head, loss with centring and sharpening, collapse diagnosis.

Shapes: ``B`` utterances per batch, ``G`` global crops (seen by teacher and student), ``V >= G``
crops seen by the student (the first ``G`` of them are the global crops), ``K`` prototypes.
Crops are stacked view-major: rows ``[v * B, (v + 1) * B)`` hold view ``v`` of the ``B`` utterances.
Hyperparameter defaults are the paper's (Cho et al., Interspeech 2022, the authors' recipe; see
``docs/method.md``). The teacher's EMA update is :func:`speechbrain_dino.training.ema.ema_update_`.
"""
from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from speechbrain_dino.training.mlp import build_mlp, flatten_embeddings


class DINOHead(nn.Module):
    """MLP → bottleneck → L2 normalisation → weight-normalised linear to ``K`` prototypes.

    Arguments
    ---------
    input_size : int
        Embedding size ``D``.
    hidden_size, bottleneck_size, n_prototypes, n_layers : int
        Paper: D → 2048 → 2048 → 256, K = 65536 (three Linear layers before the prototypes).
    use_bn : bool
        BatchNorm1d after each hidden Linear (off in the paper; a remedy against collapse).
    norm_last_layer : bool
        Fix the prototype magnitudes ``g`` at 1 (untrained), so the logits are cosines.

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
    ) -> None:
        super().__init__()
        self.mlp = build_mlp(input_size, hidden_size, bottleneck_size, n_layers, use_bn, nn.GELU)
        self.mlp.apply(_init_linear)
        self.last_layer = weight_norm(nn.Linear(bottleneck_size, n_prototypes, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` or ``[B, 1, D]`` embeddings → ``[B, K]`` prototype logits."""
        bottleneck = F.normalize(self.mlp(flatten_embeddings(embeddings)), dim=-1)
        return self.last_layer(bottleneck)

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
    """Cross-entropy between the centred, sharpened teacher and the student over crop pairs.

    Arguments
    ---------
    n_prototypes : int
        ``K``, the head's output size.
    n_global_crops : int
        ``G``: crops seen by the teacher, also the first ``G`` student crops. Paper: 2.
    student_temperature : float
        Paper: 0.1 (the teacher temperature is passed per step, see ``DINOSchedule``).
    center_momentum : float
        EMA momentum of the centre. Paper: 0.9.

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
    ) -> None:
        super().__init__()
        self.n_prototypes = n_prototypes
        self.n_global_crops = n_global_crops
        self.student_temperature = student_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, n_prototypes))

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, teacher_temperature: float
    ) -> DINOLossOutput:
        """Mean over all (teacher view g, student view v ≠ g) pairs of the batch-mean cross-entropy.

        Arguments
        ---------
        student_logits : torch.Tensor
            ``[V * B, K]``, view-major, the first ``G`` views the global crops.
        teacher_logits : torch.Tensor
            ``[G * B, K]``, view-major (no gradient flows into them).
        teacher_temperature : float
            Sharpening temperature of the teacher softmax.
        """
        n_views, batch_size = self._view_counts(student_logits, teacher_logits)
        n_global = self.n_global_crops
        teacher_log_probs = F.log_softmax(
            (teacher_logits.detach().float() - self.center) / teacher_temperature, dim=-1
        )
        teacher_probs = teacher_log_probs.exp()
        student_log_probs = F.log_softmax(student_logits.float() / self.student_temperature, dim=-1)
        pair_cross_entropy = -torch.einsum(
            "gbk,vbk->gv",
            teacher_probs.view(n_global, batch_size, -1),
            student_log_probs.view(n_views, batch_size, -1),
        ) / batch_size  # [G, V]
        same_crop = torch.eye(n_global, n_views, dtype=torch.bool, device=student_logits.device)
        loss = pair_cross_entropy.masked_fill(same_crop, 0.0).sum() / (n_global * (n_views - 1))
        return DINOLossOutput(loss, self._statistics(teacher_probs, student_log_probs.detach()))

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
        if student_rows % batch_size or n_views < max(2, self.n_global_crops):
            raise ValueError(
                f"student_logits has {student_rows} rows; expected V * {batch_size} rows with "
                f"V >= max(2, n_global_crops={self.n_global_crops}) views"
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
