"""Generated noise sources: coloured noise and babble summed from other utterances of the batch.

Used by :class:`~speechbrain_dino.data.augment.SpeechAugment` when no noise folder is given (and
:func:`sum_talkers` for babble from a folder too). Shapes: ``N`` rows of ``T`` samples.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

NOISE_EXPONENTS = (0.0, 1.0, 2.0)  # spectral slope 1/f^a: white, pink, brown


def coloured_noise(exponents: torch.Tensor, frames: int) -> torch.Tensor:
    """Noise with power spectrum ``1 / f^a`` per row (``a``: 0 white, 1 pink, 2 brown).

    Arguments
    ---------
    exponents : torch.Tensor
        ``[N]`` spectral slopes ``a``.
    frames : int
        Length ``T``.

    Returns
    -------
    torch.Tensor
        ``[N, T]``, unit power per row.
    """
    white = torch.randn(exponents.shape[0], frames, device=exponents.device)
    bins = torch.arange(frames // 2 + 1, device=exponents.device).clamp(min=1)
    shaping = bins.unsqueeze(0) ** (-exponents.unsqueeze(1) / 2)
    shaped = torch.fft.irfft(torch.fft.rfft(white) * shaping, n=frames)
    shaped = shaped - shaped.mean(1, keepdim=True)
    return shaped / shaped.square().mean(1, keepdim=True).sqrt().clamp(min=1e-12)


def sum_talkers(draw_talker: Callable[[int], torch.Tensor], n_talkers: torch.Tensor) -> torch.Tensor:
    """Babble: row ``i`` sums ``n_talkers[i]`` talkers, each scaled to unit power.

    Arguments
    ---------
    draw_talker : callable
        ``draw_talker(j)`` returns talker ``j`` for every row, ``[N, T]``.
    n_talkers : torch.Tensor
        ``[N]`` talkers per row.

    Returns
    -------
    torch.Tensor
        ``[N, T]``.
    """
    babble = None
    for slot in range(int(n_talkers.max())):
        talker = draw_talker(slot)
        talker = talker / talker.square().mean(1, keepdim=True).sqrt().clamp(min=1e-12)
        talker = talker * (slot < n_talkers).unsqueeze(1)
        babble = talker if babble is None else babble + talker
    return babble


def batch_babble(
    wavs: torch.Tensor,
    rows: torch.Tensor,
    n_talkers: torch.Tensor,
    utterance_ids: Optional[torch.Tensor] = None,
    independent: bool = True,
) -> torch.Tensor:
    """Babble for ``wavs[rows]`` from other rows of the batch.

    ``independent`` (default): each row draws its own talkers, distinct rows whose utterance
    differs from the row's own, uniformly at random. Two views of one utterance therefore hear
    different interferers, so babble gives no shortcut for matching views.

    ``independent=False`` (the behaviour of releases before 0.2): talker slot ``j`` of row ``i``
    is ``wavs[(i - s_j) % N]`` with shifts ``s_j`` drawn once per call; with view-major rows every
    view of an utterance then hears views of the *same* other utterances, and talkers that are
    the row's own utterance are silenced.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[N, T]`` the whole batch.
    rows : torch.Tensor
        ``[M]`` indices of the rows that get babble.
    n_talkers : torch.Tensor
        ``[M]`` talkers per row, clipped to ``N - 1``.
    utterance_ids : torch.Tensor, optional
        ``[N]`` utterance of each row (default: all rows distinct).

    Returns
    -------
    torch.Tensor
        ``[M, T]``.
    """
    batch = wavs.shape[0]
    if utterance_ids is None:
        utterance_ids = torch.arange(batch, device=wavs.device)
    if batch < 2:
        return torch.zeros(rows.shape[0], wavs.shape[1], device=wavs.device)
    if independent:
        return _independent_babble(wavs, rows, n_talkers, utterance_ids)
    shifts = torch.randperm(batch - 1, device=wavs.device) + 1
    n_talkers = n_talkers.clamp(max=batch - 1)

    def talker(slot: int) -> torch.Tensor:
        sources = (rows - shifts[slot]) % batch
        return wavs[sources] * (utterance_ids[sources] != utterance_ids[rows]).unsqueeze(1)

    return sum_talkers(talker, n_talkers)


def _independent_babble(
    wavs: torch.Tensor, rows: torch.Tensor, n_talkers: torch.Tensor, utterance_ids: torch.Tensor
) -> torch.Tensor:
    """Row ``m`` sums ``n_talkers[m]`` distinct random rows of other utterances (see batch_babble).

    A random score per (row, candidate) with own-utterance candidates at -1; the top scores are
    a uniform draw without replacement among the others.
    """
    other = utterance_ids[rows].unsqueeze(1) != utterance_ids.unsqueeze(0)  # [M, N]
    n_talkers = torch.minimum(n_talkers, other.sum(1))
    if int(n_talkers.max()) == 0:
        return torch.zeros(rows.shape[0], wavs.shape[1], device=wavs.device)
    scores = torch.rand(other.shape, device=wavs.device).masked_fill(~other, -1.0)
    sources = scores.topk(int(n_talkers.max()), dim=1).indices  # [M, S]
    return sum_talkers(lambda slot: wavs[sources[:, slot]], n_talkers)
