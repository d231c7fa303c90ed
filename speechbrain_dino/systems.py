"""The systems an evaluation compares: an encoder folder and the reference baselines beside it.

- an encoder name (anything else): embeddings of the ``pretrained/`` folder being evaluated;
- ``mfcc_stats``: per-utterance MFCC mean and std, standardised over the set (no learning);
- ``random_init``: the same encoder architecture, untrained (what training adds over it).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Sequence

from speechbrain_dino.baselines import mfcc_statistics
from speechbrain_dino.embeddings import EmbeddingTable, extract_embeddings
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.export import export_random_init, read_metadata
from speechbrain_dino.manifest import Row

logger = logging.getLogger(__name__)

BASELINES = ("mfcc_stats", "random_init")


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
    output_folder, cache_name : where embeddings (and the random-init export) are kept.
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
        cache_path=os.path.join(os.fspath(output_folder), f"{name}_{cache_name}.npz"),
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
