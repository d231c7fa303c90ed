"""Datasets and batching shared by every stage.

A manifest becomes a SpeechBrain :class:`DynamicItemDataset` (rows validated first, so a bad row is a
:class:`~speechbrain_dino.errors.DataError` naming its line rather than a KeyError inside a worker).
Training stages add crop pipelines from :mod:`speechbrain_dino.data.crops`; extraction batches
with :class:`DurationBatchSampler`, which groups utterances of similar length so that little compute
is spent on padding.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from speechbrain.dataio.dataset import DynamicItemDataset
from torch.utils.data import Sampler

from speechbrain_dino.data.manifest import REQUIRED_FIELDS, Row, read_manifest
from speechbrain_dino.errors import DataError, PathLike


def dataset_from_rows(rows: Sequence[Row]) -> DynamicItemDataset:
    """Wraps validated manifest rows (``duration`` as float) in a DynamicItemDataset."""
    data: Dict[str, Dict[str, object]] = {}
    for row in rows:
        item: Dict[str, object] = {key: value for key, value in row.items() if key != "ID"}
        item["duration"] = float(row["duration"])
        data[row["ID"]] = item
    return DynamicItemDataset(data)


def dataset_from_manifest(
    path: PathLike,
    required: Sequence[str] = REQUIRED_FIELDS,
    replacements: Optional[Dict[str, str]] = None,
) -> DynamicItemDataset:
    """Reads and validates a manifest, then builds its dataset (see :func:`dataset_from_rows`)."""
    return dataset_from_rows(read_manifest(path, required=required, replacements=replacements))


class DurationBatchSampler(Sampler[List[int]]):
    """Length-sorted batches bounded by padded seconds, for extraction (no shuffling).

    Utterances are sorted by duration (longest first, so an out-of-memory error shows up on the
    first batch) and packed greedily while ``len(batch) * longest_in_batch <= max_batch_seconds``.
    An utterance longer than the budget forms a batch of its own, and a batch also ends before an
    utterance shorter than ``min_length_ratio`` times its longest, which bounds padding (padding
    changes an ECAPA embedding slightly; see ``embeddings.encode_masked``).

    Arguments
    ---------
    durations : sequence of float
        Seconds per dataset item, in dataset order.
    max_batch_seconds : float
        Budget of padded audio per batch.
    max_batch_size : int, optional
        Hard cap on the number of utterances per batch.
    min_length_ratio : float
        In [0, 1]: shortest / longest utterance allowed within a batch (0: no bound).
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: Optional[int] = None,
        min_length_ratio: float = 0.0,
    ) -> None:
        if max_batch_seconds <= 0:
            raise DataError(f"max_batch_seconds must be positive, got {max_batch_seconds}")
        order = np.argsort(-np.asarray(durations, dtype=np.float64), kind="stable")
        sorted_durations = np.asarray(durations, dtype=np.float64)[order]
        self.batches: List[List[int]] = []
        start = 0
        while start < len(order):
            longest = sorted_durations[start]
            size = max(1, int(max_batch_seconds // longest)) if longest > 0 else len(order)
            if max_batch_size is not None:
                size = min(size, max_batch_size)
            too_short = np.nonzero(sorted_durations[start : start + size] < min_length_ratio * longest)[0]
            if len(too_short):
                size = int(too_short[0])
            self.batches.append(order[start : start + size].tolist())
            start += size

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
