"""Contrastive baseline on the same crops and encoder: multi-positive NT-Xent (SimCLR / SupCon).

Shapes: ``V`` views (crops) of ``B`` utterances, stacked view-major as for DINO: rows
``[v * B, (v + 1) * B)`` hold view ``v``; ``P`` the projection size.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from speechbrain_dino.training.mlp import build_mlp, flatten_embeddings
from speechbrain_dino.training.ranks import gather_rows, scale_for_ranks


class ProjectionHead(nn.Module):
    """SimCLR projector: Linear → BatchNorm1d → ReLU … → Linear to ``projection_size``.

    Defaults D → 2048 → 256 as in SimCLR. The contrastive loss works on the encoder embeddings
    directly as well (wespeaker's SimCLR recipe uses no projector, ``mlp: False``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 2048,
        projection_size: int = 256,
        n_layers: int = 2,
        use_bn: bool = True,
    ) -> None:
        super().__init__()
        self.mlp = build_mlp(input_size, hidden_size, projection_size, n_layers, use_bn, nn.ReLU)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` or ``[B, 1, D]`` → ``[B, P]`` (not normalised; the loss normalises)."""
        return self.mlp(flatten_embeddings(embeddings))


def gather_views_across_ranks(projections: torch.Tensor, n_views: int) -> torch.Tensor:
    """All-gathers ``[V * B, P]`` from every rank into ``[V * R * B, P]``, still view-major.

    Gradient flows into this rank's rows only (:func:`~speechbrain_dino.training.ranks.gather_rows`).
    Every rank must pass the same ``B`` (use ``drop_last``).
    """
    gathered = gather_rows(projections.contiguous())  # [R * V * B, P], rank-major
    ranks = gathered.shape[0] // projections.shape[0]
    return gathered.view(ranks, n_views, -1, gathered.shape[-1]).transpose(0, 1).flatten(0, 2)


class NTXentLoss(nn.Module):
    """Normalised-temperature cross-entropy with every other view of an utterance as a positive.

    For each row ``i`` (anchor): ``-mean_{p in P(i)} log( exp(s_ip / τ) / Σ_{j ≠ i} exp(s_ij / τ) )``
    with ``s`` the cosine similarity, ``P(i)`` the other ``V − 1`` views of the same utterance and
    the denominator over all other rows (positives and the other utterances' views, the negatives);
    averaged over all anchors. With ``V = 2`` this is SimCLR's NT-Xent; for ``V > 2`` SupCon's
    ``L_out`` with the utterance as the label.

    Arguments
    ---------
    temperature : float
        τ. Default 0.07, wespeaker's SimCLR speaker recipe (``simclr_args: T: 0.07``,
        Vox1-O EER 8.52% with ECAPA c512, the contrastive baseline of ``docs/method.md``).
    gather_distributed : bool
        Under an initialised ``torch.distributed`` group, contrast against the projections of
        all ranks (more negatives); each rank then computes the same global loss, and gradients
        flow through its own rows (see :func:`gather_views_across_ranks`), scaled by the world
        size so that DDP's average over ranks is the global loss's gradient.
    """

    def __init__(self, temperature: float = 0.07, gather_distributed: bool = False) -> None:
        super().__init__()
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, projections: torch.Tensor, n_views: int) -> torch.Tensor:
        """``[V * B, P]`` view-major projections → scalar loss."""
        if n_views < 2 or projections.shape[0] % n_views:
            raise ValueError(
                f"need n_views >= 2 dividing the {projections.shape[0]} rows, got n_views={n_views}"
            )
        unit = F.normalize(projections.float(), dim=-1)
        gathered = self.gather_distributed and dist.is_available() and dist.is_initialized()
        if gathered:
            unit = gather_views_across_ranks(unit, n_views)
        n_rows = unit.shape[0]
        utterance = torch.arange(n_rows, device=unit.device) % (n_rows // n_views)
        is_self = torch.eye(n_rows, dtype=torch.bool, device=unit.device)
        is_positive = (utterance[:, None] == utterance[None, :]) & ~is_self
        logits = (unit @ unit.T / self.temperature).masked_fill(is_self, float("-inf"))
        log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positive_log_probs = log_probs.masked_fill(~is_positive, 0.0).sum(dim=1) / (n_views - 1)
        loss = -positive_log_probs.mean()
        return scale_for_ranks(loss) if gathered else loss
