"""Losses over the rows of every DDP rank: gather the rows, then scale the gradient.

Under ``torch.distributed`` a batch-level loss (contrastive negatives, a covariance, a batch-mean
distribution) should see the rows of all ranks. Each rank gathers them (:func:`gather_rows`),
computes the same global loss, and back-propagates through its own rows only; DDP then averages
the ranks' gradients, so the loss's gradient is scaled by the world size (:func:`scale_for_ranks`)
to make that average the global loss's gradient. Outside a process group both are identities.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes of the initialised ``torch.distributed`` group (1 outside one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """All-gathers ``[N, F]`` from every rank into ``[R * N, F]`` (this rank's rows keep their grad).

    Outside ``torch.distributed`` the rows come back as they are. Under DDP the other ranks' rows
    are constants here; a loss over the gathered rows must be passed through
    :func:`scale_for_ranks` so that DDP's average of the per-rank gradients is the gradient of
    the global loss.
    """
    if world_size() == 1:
        return rows
    gathered = [torch.empty_like(rows) for _ in range(world_size())]
    dist.all_gather(gathered, rows.detach().contiguous())
    gathered[dist.get_rank()] = rows
    return torch.cat(gathered)


def scale_for_ranks(loss: torch.Tensor) -> torch.Tensor:
    """Same value; gradient times the world size (each rank back-propagates only its own rows)."""
    if world_size() == 1:
        return loss
    return loss + (world_size() - 1) * (loss - loss.detach())
