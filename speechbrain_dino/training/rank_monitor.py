"""Effective rank of an embedding: the dimensional-collapse indicator of the training log.

A self-supervised encoder can keep its embeddings spread (no complete collapse) while using only a
few directions of its ``D`` dimensions (dimensional collapse). Two numbers measure it:

- ``rankme``: RankMe (Garrido et al., "RankMe: assessing the downstream performance of pretrained
  self-supervised representations by their rank", ICML 2023), ``exp(H(p))`` with ``p`` the
  singular values of the embedding matrix normalised to sum to one: ``D`` for a perfectly spread
  embedding, 1 for a rank-one one.
- ``dims_99``: how many principal components hold 99% of the (centred) variance.

:class:`EffectiveRankMonitor` keeps the latest embeddings of the epoch in a bounded buffer (a
checkpoint recoverable, so a run resumed mid-epoch reports what an uninterrupted run does).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks


def effective_rank(embeddings: torch.Tensor, variance_share: float = 0.99) -> Dict[str, float]:
    """``rankme`` and ``dims_99`` (components for ``variance_share`` of the variance) of ``[N, D]``."""
    matrix = embeddings.detach().double().reshape(embeddings.shape[0], -1)
    singular = torch.linalg.svdvals(matrix)
    share = singular / singular.sum().clamp(min=1e-30) + 1e-12
    rankme = torch.exp(-(share * share.log()).sum())
    variances = torch.linalg.svdvals(matrix - matrix.mean(dim=0)).square()
    cumulative = variances.cumsum(0) / variances.sum().clamp(min=1e-30)
    dims = int((cumulative < variance_share).sum()) + 1
    return {"rankme": float(rankme), "dims_99": float(min(dims, variances.shape[0]))}


@register_checkpoint_hooks
class EffectiveRankMonitor:
    """The effective rank of the last ``capacity`` embeddings seen in the current epoch.

    Arguments
    ---------
    capacity : int
        Rows kept (the oldest are dropped). The rank of ``N`` rows is at most ``N``: keep
        ``capacity`` well above the embedding size.
    """

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self.buffer: Optional[torch.Tensor] = None
        self._resumed_mid_epoch = False

    def add(self, embeddings: torch.Tensor) -> None:
        """Appends ``[N, D]`` (or ``[N, 1, D]``) embeddings, keeping the newest ``capacity`` rows."""
        rows = embeddings.detach().float().reshape(embeddings.shape[0], -1).cpu()
        self.buffer = rows if self.buffer is None else torch.cat([self.buffer, rows])
        self.buffer = self.buffer[-self.capacity :]

    def summary(self) -> Dict[str, float]:
        """:func:`effective_rank` of the buffer ({} before any embedding, or with fewer than 2)."""
        if self.buffer is None or self.buffer.shape[0] < 2:
            return {}
        return effective_rank(self.buffer)

    def start_epoch(self) -> None:
        """Empties the buffer, unless it was just restored from a mid-epoch checkpoint."""
        if self._resumed_mid_epoch:
            self._resumed_mid_epoch = False
            return
        self.buffer = None

    @mark_as_saver
    def save(self, path: str) -> None:
        """Writes the buffer to ``path``."""
        torch.save({"buffer": self.buffer}, path)

    @mark_as_loader
    def load(self, path: str, end_of_epoch: bool = False) -> None:
        """Restores the buffer of an unfinished epoch (a finished one starts over anyway)."""
        if end_of_epoch:
            return
        self.buffer = torch.load(path)["buffer"]
        self._resumed_mid_epoch = True
