"""Mixing a batch of waveforms with noise at a chosen SNR, over each row's valid samples.

Shapes: ``N`` rows of ``T`` samples; relative lengths ``[N]`` mark each row's valid samples (the
rest is padding, ignored by every power measurement).
"""
from __future__ import annotations

from typing import Sequence

import torch


def valid_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``[N, T]`` bool mask of the valid samples, from relative ``lengths [N]``."""
    valid = (lengths * frames).round().clamp(1, frames)
    return torch.arange(frames, device=lengths.device) < valid.unsqueeze(1)


def mean_power(wavs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` mean square of ``wavs [N, T]`` over the ``mask [N, T]`` samples."""
    return (wavs.square() * mask).sum(1) / mask.sum(1).clamp(min=1)


def add_at_snr(
    clean: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``clean + g * noise`` with ``g [N]`` such that each row reaches ``snr_db [N]``.

    Both powers are measured over the valid samples (``mask [N, T]``); noise in the padding is
    dropped. A silent clean row stays silent.
    """
    noise = noise * mask
    target_noise_power = mean_power(clean, mask) / 10.0 ** (snr_db / 10.0)
    gain = (target_noise_power / mean_power(noise, mask).clamp(min=1e-20)).sqrt()
    return clean + gain.unsqueeze(1) * noise


def uniform(low_high: Sequence[float], count: int, device: torch.device) -> torch.Tensor:
    """``[count]`` values drawn uniformly in ``[low, high]``."""
    low, high = float(low_high[0]), float(low_high[1])
    return low + (high - low) * torch.rand(count, device=device)
