"""Auxiliary objectives of the regularised DINO family, as weighted terms beside the DINO loss.

Every term is a module called with the step's :class:`SelfDistillationViews` and returns a scalar
loss; its weight follows a :class:`~speechbrain_dino.training.schedules.TermWeight` over the run. The
self-distillation Brain adds ``sum_t weight_t(step) * term_t(views)`` to the DINO (or SDPN) loss.

- :class:`VarianceCovarianceTerm`: RDINO's diversity regularisation (hinge on each dimension's
  standard deviation) and redundancy elimination (squared off-diagonal covariance), on the
  student's and the teacher's head expander outputs (Chen et al., "Pushing the limits of self-supervised speaker
  verification using regularized distillation framework", ICASSP 2023; 3D-Speaker sv-rdino).
- :class:`KoLeoTerm`: the Kozachenko-Leonenko entropy estimator of the embeddings' spread
  (Sablayrolles et al., 2019), used by SDPN (3D-Speaker sv-sdpn) on the student embeddings.
- :class:`MeanEntropyTerm`: SDPN's "me-max": KL of the batch-mean student prototype distribution
  from uniform, which keeps every prototype in use.
- :class:`EmbeddingCosineTerm`: 1 - cosine between the student embedding of one crop and the
  teacher embedding of another crop of the utterance (a term of the Hyperion DINO recipe).
- :class:`ContrastiveTerm`: NT-Xent on a projection of the student embeddings, usually with a
  weight that decays to zero (a contrastive start that hands over to self-distillation, as in
  C3-DINO and MeMo).

Shapes: ``B`` utterances, ``Vs`` crops seen by the student, ``G`` crops seen by the teacher,
``D`` embedding size, ``K`` prototypes, ``E`` expander size; rows view-major.
"""
from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from speechbrain_dino.training.contrastive import NTXentLoss, ProjectionHead
from speechbrain_dino.training.ranks import gather_rows, scale_for_ranks, world_size
from speechbrain_dino.training.schedules import TermWeight


class SelfDistillationViews(NamedTuple):
    """What one self-distillation step computed, for the loss and the auxiliary terms.

    Attributes
    ----------
    batch_size : int
        ``B``.
    student_embeddings : torch.Tensor
        ``[Vs * B, D]`` student backbone embeddings, view-major.
    student_logits : torch.Tensor
        ``[Vs * B, K]`` student prototype logits.
    student_expander : torch.Tensor or None
        ``[Gs * B, E]`` student head expander outputs of the global crops the student saw (heads
        with an expander only; ``Gs`` is ``G``, or 0 when the student sees local crops only).
    teacher_embeddings : torch.Tensor
        ``[G * B, D]`` teacher backbone embeddings (no gradient).
    teacher_expander : torch.Tensor or None
        ``[G * B, E]`` teacher head expander outputs (no gradient; heads with an expander only).
    teacher_logits : torch.Tensor
        ``[G * B, K]`` teacher prototype logits (no gradient).
    student_sees_global : bool
        Whether the first ``G`` student views are the teacher's crops (the DINO layout) or the
        student saw other crops only (the SDPN layout).
    """

    batch_size: int
    student_embeddings: torch.Tensor
    student_logits: torch.Tensor
    student_expander: Optional[torch.Tensor]
    teacher_embeddings: torch.Tensor
    teacher_logits: torch.Tensor
    student_sees_global: bool
    teacher_expander: Optional[torch.Tensor] = None

    @property
    def n_student_views(self) -> int:
        """``Vs``."""
        return self.student_embeddings.shape[0] // self.batch_size

    @property
    def n_teacher_views(self) -> int:
        """``G``."""
        return self.teacher_embeddings.shape[0] // self.batch_size


class WeightedTerm(nn.Module):
    """Base of the auxiliary terms: holds the term's weight schedule.

    Arguments
    ---------
    weight : TermWeight
        The weight over the run (see :class:`~speechbrain_dino.training.schedules.TermWeight`).
    """

    def __init__(self, weight: TermWeight) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, views: SelfDistillationViews) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class AuxiliaryTerms(nn.ModuleDict):
    """Named :class:`WeightedTerm` modules; called, their weighted sum and per-term values.

    Terms whose weight is zero over the whole run are dropped at construction, so a YAML can
    declare every term and switch each on by its weight alone. A module with a ``forward`` (not a
    bare ModuleDict), so that the Brain's DDP wrapper sees every call. Each kept term is computed
    at every step, also where its weight has decayed to 0, so the set of parameters that receive
    gradients never changes (DDP needs no unused-parameter search).

    Arguments
    ---------
    modules : mapping of name -> WeightedTerm, optional
        The terms.
    """

    def __init__(self, modules: Optional[Dict[str, WeightedTerm]] = None) -> None:
        active = {name: term for name, term in (modules or {}).items() if not term.weight.always_zero}
        super().__init__(active)

    def forward(
        self, views: "SelfDistillationViews", step: int, total_steps: int
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``(sum_t w_t * term_t(views), {"<t>_loss": value, "<t>_weight": w_t})``."""
        total = views.student_logits.new_zeros(())
        stats: Dict[str, torch.Tensor] = {}
        for name, term in self.items():
            weight = term.weight.value(step, total_steps)
            value = term(views)
            total = total + weight * value
            stats[f"{name}_loss"] = value.detach()
            stats[f"{name}_weight"] = torch.tensor(weight)
        return total, stats


class VarianceCovarianceTerm(WeightedTerm):
    """RDINO's regulariser on the expander outputs of the global crops, student and teacher.

    With ``x`` (student) and ``y`` (teacher) the ``[B, E]`` expander outputs averaged over the
    global crops of each utterance (gathered over ranks) and centred over the batch, as
    3D-Speaker's ``RegLoss`` (``speakerlab/loss/dino_loss.py``):
    ``std_coeff * (h(x) + h(y)) / 2 + cov_coeff * (c(x) + c(y))``, with the variance hinge
    ``h(z) = mean_e relu(1 - sqrt(var_e(z) + eps))`` and the covariance term
    ``c(z) = sum_{i != j} C_ij^2 / E``, ``C = z^T z / (B - 1)``. The teacher's halves carry no
    gradient, so the student's hinge acts with ``std_coeff / 2`` and its covariance with
    ``cov_coeff``. 3D-Speaker sv-rdino: std_coeff 10, cov_coeff 1, weight 0.2 ramped from 0.05
    over the first 10 of 70 epochs.
    """

    def __init__(self, weight: TermWeight, std_coeff: float = 10.0, cov_coeff: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__(weight)
        self.std_coeff = std_coeff
        self.cov_coeff = cov_coeff
        self.eps = eps

    def forward(self, views: SelfDistillationViews) -> torch.Tensor:
        """The regulariser of ``views.student_expander`` and ``views.teacher_expander``; an error
        when the heads have no expander or the student saw no global crop."""
        student, teacher = views.student_expander, views.teacher_expander
        if student is None or student.shape[0] == 0 or teacher is None:
            raise ValueError(
                "the variance-covariance term needs the heads' expander outputs of the global "
                "crops: set the head's expander_size and let the student see global crops"
            )
        hinges, covariances = zip(*(
            variance_covariance(gather_rows(per_utterance_mean(expander, views.batch_size)), self.eps)
            for expander in (student, teacher.detach())
        ))
        loss = self.std_coeff * sum(hinges) / 2 + self.cov_coeff * sum(covariances)
        return scale_for_ranks(loss)


def per_utterance_mean(rows: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``[V * B, E]`` view-major rows -> ``[B, E]`` mean over each utterance's ``V`` views (float32)."""
    return rows.float().view(-1, batch_size, rows.shape[-1]).mean(0)


def variance_covariance(features: torch.Tensor, eps: float = 1e-4) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(mean relu(1 - std), sum offdiag(C)^2 / E)`` of ``[N, E]`` features, centred over N."""
    count, size = features.shape
    centred = features - features.mean(dim=0)
    std = torch.sqrt(centred.var(dim=0) + eps)
    covariance = centred.T @ centred / (count - 1)
    off_diagonal = covariance - torch.diag_embed(covariance.diagonal())
    return F.relu(1.0 - std).mean(), off_diagonal.square().sum() / size


class KoLeoTerm(WeightedTerm):
    """``sum_v -mean_i log ||u_vi - u_v,nn(i)||`` over the student views' L2-normalised embeddings.

    ``nn(i)`` is the nearest other utterance of the same view in the batch; the term adds one
    KoLeo per student view, as the reference code does (3D-Speaker sv-sdpn:
    ``sum(koleo(p) for p in local_embeddings.chunk(4))``, weight 0.1 on the four local crops;
    DINOv2: the sum over its two global crops). The weight therefore acts on every view in full.
    """

    def __init__(self, weight: TermWeight, eps: float = 1e-8) -> None:
        super().__init__(weight)
        self.eps = eps

    def forward(self, views: SelfDistillationViews) -> torch.Tensor:
        """KoLeo of ``views.student_embeddings``, view by view."""
        embeddings = views.student_embeddings.float()
        return koleo(embeddings.view(views.n_student_views, views.batch_size, -1), self.eps)


def koleo(embeddings: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko term of ``[N, D]`` embeddings (N >= 2), after L2 normalisation; of
    ``[V, N, D]``, the sum of each group's term (neighbours sought within a group only)."""
    unit = F.normalize(embeddings, dim=-1, eps=eps)
    with torch.no_grad():
        similarity = unit @ unit.transpose(-1, -2)
        similarity.diagonal(dim1=-2, dim2=-1).fill_(-2.0)
        nearest = similarity.argmax(dim=-1, keepdim=True)  # [..., N, 1]
    neighbours = torch.take_along_dim(unit, nearest, dim=-2)
    distances = (unit - neighbours).norm(dim=-1)  # [..., N]
    return -torch.log(distances + eps).mean(dim=-1).sum()


class MeanEntropyTerm(WeightedTerm):
    """SDPN's me-max: ``sum_k p_k log p_k + log K`` of the batch-mean student distribution ``p``.

    ``p`` is the mean over every student row (and rank) of ``softmax(logits / temperature)``; the
    term is KL(p || uniform) >= 0, zero when all prototypes are used equally. SDPN: weight 1.
    """

    def __init__(self, weight: TermWeight, temperature: float = 0.1) -> None:
        super().__init__(weight)
        self.temperature = temperature

    def forward(self, views: SelfDistillationViews) -> torch.Tensor:
        """KL of the mean student prototype distribution from uniform."""
        probs = F.softmax(views.student_logits.float() / self.temperature, dim=-1)
        sum_and_count = torch.cat([probs.sum(0), probs.new_tensor([probs.shape[0]])])
        if world_size() > 1:
            others = sum_and_count.detach().clone()
            dist.all_reduce(others)
            sum_and_count = sum_and_count + (others - sum_and_count.detach())
        mean = sum_and_count[:-1] / sum_and_count[-1]
        return scale_for_ranks((mean * torch.log(mean.clamp(min=1e-12))).sum() + math.log(mean.shape[0]))


class EmbeddingCosineTerm(WeightedTerm):
    """``1 - cos(student embedding of crop v, teacher embedding of crop g)``, mean over pairs.

    Pairs are every teacher crop ``g`` with every student crop ``v`` of the same utterance,
    except the same crop (``v == g`` when the student sees the global crops).
    """

    def forward(self, views: SelfDistillationViews) -> torch.Tensor:
        """The mean cosine distance over the (g, v) pairs."""
        batch = views.batch_size
        student = F.normalize(views.student_embeddings.float(), dim=-1).view(views.n_student_views, batch, -1)
        teacher = F.normalize(views.teacher_embeddings.detach().float(), dim=-1).view(views.n_teacher_views, batch, -1)
        cosines = torch.einsum("gbd,vbd->gv", teacher, student) / batch  # [G, Vs], mean over B
        pairs = torch.ones_like(cosines, dtype=torch.bool)
        if views.student_sees_global:
            pairs &= ~torch.eye(*cosines.shape, dtype=torch.bool, device=cosines.device)
        return 1.0 - cosines[pairs].mean()


class ContrastiveTerm(WeightedTerm):
    """NT-Xent (every other crop of the utterance a positive) on projected student embeddings.

    Arguments
    ---------
    weight : TermWeight
        Typically decaying to 0 (``decay_fraction``), a contrastive start that hands over to the
        self-distillation loss.
    embedding_dim : int
        ``D``.
    projection_size, hidden_size : int
        The projector (:class:`~speechbrain_dino.training.contrastive.ProjectionHead`, with BatchNorm).
    temperature : float
        NT-Xent temperature.
    """

    def __init__(
        self,
        weight: TermWeight,
        embedding_dim: int,
        projection_size: int = 128,
        hidden_size: int = 512,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(weight)
        self.projector = ProjectionHead(embedding_dim, hidden_size, projection_size)
        self.loss = NTXentLoss(temperature, gather_distributed=True)

    def forward(self, views: SelfDistillationViews) -> torch.Tensor:
        """NT-Xent over the student's ``Vs`` crops of each utterance."""
        return self.loss(self.projector(views.student_embeddings), views.n_student_views)
