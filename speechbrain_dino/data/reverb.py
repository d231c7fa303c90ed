"""Reverberation: synthetic room impulse responses, alignment of measured ones, batched convolution.

Every RIR here has its direct path at index 0, so convolving with it adds reverberation without
delaying the speech. Shapes: ``N`` rows of ``T`` samples, RIRs ``[N, L]``.
"""
from __future__ import annotations

import math

import torch

from speechbrain_dino.data.mixing import mean_power

DECAY_60_DB = math.log(1000.0)  # amplitude decay constant: exp(-DECAY_60_DB) = -60 dB


def synthetic_rirs(
    rt60: torch.Tensor,
    drr_db: torch.Tensor,
    sample_rate: int,
    frames: int,
    n_reflections: int = 8,
    early_seconds: float = 0.05,
) -> torch.Tensor:
    """Room impulse responses with the direct path at index 0 and amplitude 1.

    After the direct path: a Gaussian tail under the envelope ``exp(-ln(1000) t / RT60)``
    (-60 dB at RT60) plus ``n_reflections`` sparse early reflections within ``early_seconds``
    (random sign, envelope-weighted, together about as energetic as the tail), all scaled so the
    direct-to-reverberant energy ratio is ``drr_db``.

    Arguments
    ---------
    rt60, drr_db : torch.Tensor
        ``[N]`` reverberation times (s) and direct-to-reverberant ratios (dB).
    frames : int
        RIR length ``L``.

    Returns
    -------
    torch.Tensor
        ``[N, L]``.
    """
    count, device = rt60.shape[0], rt60.device
    time = torch.arange(frames, device=device) / sample_rate
    envelope = torch.exp(-DECAY_60_DB * time.unsqueeze(0) / rt60.unsqueeze(1))
    reverberant = torch.randn(count, frames, device=device) * envelope
    early_frames = max(2, min(frames, int(early_seconds * sample_rate)))
    positions = torch.randint(1, early_frames, (count, n_reflections), device=device)
    tail_energy_share = envelope.square().sum(1, keepdim=True) / n_reflections
    signs = torch.randint(2, (count, n_reflections), device=device) * 2 - 1
    amplitudes = signs * envelope.gather(1, positions) * tail_energy_share.sqrt()
    reverberant = reverberant.scatter_add(1, positions, amplitudes)
    reverberant[:, 0] = 0.0
    reverberant_energy = reverberant.square().sum(1, keepdim=True).clamp(min=1e-12)
    target_energy = 10.0 ** (-drr_db.unsqueeze(1) / 10.0)
    rirs = reverberant * (target_energy / reverberant_energy).sqrt()
    rirs[:, 0] = 1.0
    return rirs


def align_direct_path(rir: torch.Tensor) -> torch.Tensor:
    """A measured ``[L]`` RIR shifted so its strongest tap (the direct path) is at index 0 with
    value +1; what precedes it (propagation delay) is dropped."""
    peak = int(rir.abs().argmax())
    return rir[peak:] / rir[peak]


def reverberate(wavs: torch.Tensor, rirs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Batched FFT convolution of each row with its own RIR, direct path kept in place.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[N, T]``.
    rirs : torch.Tensor
        ``[N, L]`` with the direct path at index 0 (so no delay is introduced).
    mask : torch.Tensor
        ``[N, T]`` valid samples: the output keeps each row's power over them and is zero after.

    Returns
    -------
    torch.Tensor
        ``[N, T]``: the first ``T`` samples of the convolution (the tail past the end is cut).
    """
    frames = wavs.shape[1]
    fft_size = 1 << (frames + rirs.shape[1] - 2).bit_length()
    spectrum = torch.fft.rfft(wavs, n=fft_size) * torch.fft.rfft(rirs, n=fft_size)
    wet = torch.fft.irfft(spectrum, n=fft_size)[:, :frames] * mask
    gain = (mean_power(wavs, mask) / mean_power(wet, mask).clamp(min=1e-20)).sqrt()
    return wet * gain.unsqueeze(1)
