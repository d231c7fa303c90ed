"""The systems an evaluation compares: the evaluated encoder and the reference baselines.

- an encoder name (anything else): embeddings of the ``pretrained/`` folder being evaluated;
- ``mfcc_stats``: per-utterance MFCC mean and std, standardised over the set (no learning):
  each utterance becomes ``[mean(c_0..c_{n-1}), std(c_0..c_{n-1})]`` over its frames, with MFCCs
  from SpeechBrain's :class:`~speechbrain.lobes.features.MFCC` (no deltas, no context), batched in
  length order with the padded frames masked out of the statistics, then z-scored per dimension
  over the set, as in the small-scale CPU reference run (``docs/method.md``); cosine scoring of
  those vectors is the baseline verification system, a linear probe on them the emotion one;
- ``random_init``: the same encoder architecture, untrained (what training adds over it).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Sequence, Union

import numpy as np
import torch
from sklearn.preprocessing import scale
from speechbrain.lobes.features import MFCC

from speechbrain_dino.data.audio import audio_info, load_audio
from speechbrain_dino.data.manifest import Row, read_manifest
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.inference.embeddings import EmbeddingTable, extract_embeddings
from speechbrain_dino.inference.export import export_random_init, read_metadata

logger = logging.getLogger(__name__)

#: The reference systems an evaluation can run beside the encoder (``baselines`` in the YAMLs),
#: each with what it is in a few words (the legend of the pipeline's table).
BASELINE_DESCRIPTIONS = {
    "mfcc_stats": "MFCC mean+std statistics (no learning)",
    "random_init": "the same encoder untrained",
}
BASELINES = tuple(BASELINE_DESCRIPTIONS)

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


def embeddings_cache(output_folder: PathLike, system: str, cache_name: str) -> str:
    """Where :func:`system_embeddings` keeps the embeddings of ``system`` for ``cache_name``
    (``test``, ``cohort``, ``embeddings``...) in an evaluation's output folder."""
    return os.path.join(os.fspath(output_folder), f"{system}_{cache_name}.npz")


def system_embeddings(
    name: str,
    pretrained_path: PathLike,
    rows: Sequence[Row],
    output_folder: PathLike,
    cache_name: str,
    extraction: Dict[str, Any],
    seed: int = 0,
) -> EmbeddingTable:
    """Embeddings ``[N, D]`` of ``rows`` by the system ``name`` (cached in ``output_folder``).

    Arguments
    ---------
    name : str
        ``mfcc_stats``, ``random_init``, or the evaluated encoder's display name.
    pretrained_path : PathLike
        The evaluated encoder (``random_init`` copies its architecture).
    rows : manifest rows to embed.
    output_folder, cache_name : where embeddings (:func:`embeddings_cache`) and the random-init
        export are kept.
    extraction : keyword arguments of :func:`extract_embeddings` (device, sample_rate, ...).
    seed : int
        Seed of the random initialisation.
    """
    if name == "mfcc_stats":
        vectors = mfcc_statistics(
            rows, sample_rate=extraction.get("sample_rate", 16000), standardize=True
        )
        return EmbeddingTable([row["ID"] for row in rows], vectors)
    if name == "random_init":
        pretrained_path = export_random_init(
            pretrained_path, os.path.join(os.fspath(output_folder), "random_init"), seed=seed
        )
    return extract_embeddings(
        pretrained_path,
        rows,
        cache_path=embeddings_cache(output_folder, name, cache_name),
        **extraction,
    )


def checked_baselines(names: Sequence[str], pretrained_path: PathLike) -> list:
    """The baseline list of a YAML, each name checked.

    ``random_init`` needs the architecture that this project records beside its exports; for a
    foreign encoder folder (e.g. one of SpeechBrain's models) it is left out with a warning.
    """
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise DataError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    if "random_init" in names and "encoder_kwargs" not in read_metadata(pretrained_path):
        logger.warning("%s records no architecture: the random_init baseline is skipped", pretrained_path)
        return [name for name in names if name != "random_init"]
    return list(names)
