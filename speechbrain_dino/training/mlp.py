"""The MLP blocks of the projection heads (DINO's and the contrastive baseline's)."""
from __future__ import annotations

from typing import List, Type

import torch
from torch import nn


def flatten_embeddings(embeddings: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` or SpeechBrain's ``[B, 1, D]`` → ``[B, D]``."""
    if embeddings.dim() == 3 and embeddings.shape[1] == 1:
        return embeddings.squeeze(1)
    if embeddings.dim() != 2:
        raise ValueError(f"expected embeddings [B, D] or [B, 1, D], got {tuple(embeddings.shape)}")
    return embeddings


def build_mlp(
    input_size: int,
    hidden_size: int,
    output_size: int,
    n_layers: int,
    use_bn: bool,
    activation: Type[nn.Module],
) -> nn.Sequential:
    """``n_layers`` Linear layers; each but the last followed by [BatchNorm1d] and ``activation``."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    sizes = [input_size] + [hidden_size] * (n_layers - 1) + [output_size]
    layers: List[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(size_in, size_out))
        if index < n_layers - 1:
            if use_bn:
                layers.append(nn.BatchNorm1d(size_out))
            layers.append(activation())
    return nn.Sequential(*layers)
