"""The reference baseline: per-utterance MFCC mean and standard deviation.

Each utterance becomes ``[mean(c_0..c_{n-1}), std(c_0..c_{n-1})]`` over its frames, with MFCCs from
SpeechBrain's :class:`~speechbrain.lobes.features.MFCC` (no deltas, no context). Utterances are
batched in length order and padded; padded frames are masked out of the statistics. With
``standardize=True`` each dimension is z-scored over the set, as in the baseline of PAPER.md;
cosine scoring of those vectors is then the baseline verification system, and a linear classifier
on them the baseline emotion system.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Union

import numpy as np
import torch
from sklearn.preprocessing import scale
from speechbrain.lobes.features import MFCC

from speechbrain_dino.audio import audio_info, load_audio
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.manifest import Row, read_manifest

Waveform = Union[np.ndarray, torch.Tensor]
Sources = Union[PathLike, Sequence[Row], Sequence[PathLike], Sequence[Waveform]]

_HOP_SECONDS = 0.010  # SpeechBrain MFCC's default hop


def mfcc_statistics(
    sources: Sources,
    sample_rate: int = 16000,
    n_mfcc: int = 20,
    batch_size: int = 32,
    standardize: bool = False,
) -> np.ndarray:
    """MFCC mean+std embeddings.

    Arguments
    ---------
    sources : PathLike or sequence
        A manifest path, manifest rows (their ``wav``), audio paths, or 1-D waveforms
        (numpy arrays or tensors ``[T]``) at ``sample_rate``.
    sample_rate : int
        Rate of the audio (files at another rate are a DataError).
    n_mfcc : int
        Cepstral coefficients per frame (c0 included).
    batch_size : int
        Utterances per padded batch.
    standardize : bool
        z-score every dimension over the set.

    Returns
    -------
    np.ndarray
        ``[N, 2 * n_mfcc]`` float32, rows in the order of ``sources``.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    items = _as_items(sources)
    if not items:
        raise DataError("no utterances to embed")
    lengths = np.array([_num_samples(item, sample_rate) for item in items])
    mfcc = MFCC(
        deltas=False, context=False, sample_rate=sample_rate, n_mfcc=n_mfcc, n_mels=max(23, n_mfcc)
    )
    hop = int(round(_HOP_SECONDS * sample_rate))
    statistics = np.empty((len(items), 2 * n_mfcc))
    order = np.argsort(lengths, kind="stable")
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            waves = [_waveform(items[index], sample_rate) for index in batch]
            padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)  # [B, T]
            features = mfcc(padded)  # [B, frames, n_mfcc]
            valid_frames = torch.as_tensor([wave.numel() // hop + 1 for wave in waves])
            statistics[batch] = _masked_mean_std(features, valid_frames).numpy()
    return (scale(statistics) if standardize else statistics).astype(np.float32)


def _masked_mean_std(features: torch.Tensor, valid_frames: torch.Tensor) -> torch.Tensor:
    """Mean and std over the first ``valid_frames[b]`` frames of ``features[b]``.

    Arguments
    ---------
    features : torch.Tensor
        ``[B, frames, C]``.
    valid_frames : torch.Tensor
        ``[B]`` counts, at most ``frames``.

    Returns
    -------
    torch.Tensor
        ``[B, 2 * C]``: means then standard deviations.
    """
    valid_frames = valid_frames.clamp(max=features.shape[1])
    mask = (torch.arange(features.shape[1])[None, :] < valid_frames[:, None]).unsqueeze(-1)
    count = valid_frames[:, None].to(features.dtype)
    mean = (features * mask).sum(dim=1) / count
    variance = (((features - mean[:, None, :]) * mask) ** 2).sum(dim=1) / count
    return torch.cat([mean, variance.sqrt()], dim=1)


def _as_items(sources: Sources) -> List[Union[str, torch.Tensor]]:
    """Paths (str) or 1-D float tensors, one per utterance."""
    if isinstance(sources, (str, os.PathLike)):
        return [row["wav"] for row in read_manifest(sources, required=("ID", "duration", "wav"))]
    items: List[Union[str, torch.Tensor]] = []
    for source in sources:
        if isinstance(source, dict):
            items.append(source["wav"])
        elif isinstance(source, (str, os.PathLike)):
            items.append(os.fspath(source))
        else:
            wave = torch.as_tensor(source, dtype=torch.float32)
            if wave.dim() != 1 or wave.numel() == 0:
                raise DataError(f"expected 1-D non-empty waveforms, got shape {tuple(wave.shape)}")
            items.append(wave)
    return items


def _num_samples(item: Union[str, torch.Tensor], sample_rate: int) -> int:
    """Length in samples at ``sample_rate`` (from the header for files)."""
    if isinstance(item, torch.Tensor):
        return item.numel()
    info = audio_info(item)
    return int(info.duration * sample_rate)


def _waveform(item: Union[str, torch.Tensor], sample_rate: int) -> torch.Tensor:
    return item if isinstance(item, torch.Tensor) else load_audio(item, sample_rate=sample_rate)
