"""Per-epoch averages of per-batch training diagnostics, as a checkpoint recoverable.

A run killed mid-epoch and resumed from an intra-epoch checkpoint logs, for that epoch, the
averages over all of its batches (those before the kill included), as an uninterrupted run does.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Mapping

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks


@register_checkpoint_hooks
class EpochAverages:
    """Running sums of named per-batch values over the current epoch.

    Attributes
    ----------
    sums : dict name -> float, summed values
    batches : int, batches counted (the divisor of every average)
    """

    def __init__(self) -> None:
        self.sums: Dict[str, float] = defaultdict(float)
        self.batches = 0
        self._resumed_mid_epoch = False

    def add(self, values: Mapping[str, float]) -> None:
        """Adds values to the sums without counting a batch (e.g. one of several per batch)."""
        for key, value in values.items():
            self.sums[key] += float(value)

    def add_batch(self, values: Mapping[str, float]) -> None:
        """Adds one batch's values and counts the batch."""
        self.add(values)
        self.batches += 1

    def averages(self) -> Dict[str, float]:
        """Every sum divided by the batch count."""
        return {key: total / max(self.batches, 1) for key, total in self.sums.items()}

    def start_epoch(self) -> None:
        """Clears the sums, unless they were just restored from a mid-epoch checkpoint."""
        if self._resumed_mid_epoch:
            self._resumed_mid_epoch = False
            return
        self.sums = defaultdict(float)
        self.batches = 0

    @mark_as_saver
    def save(self, path: str) -> None:
        """Writes the sums and the batch count to ``path``."""
        torch.save({"sums": dict(self.sums), "batches": self.batches}, path)

    @mark_as_loader
    def load(self, path: str, end_of_epoch: bool = False) -> None:
        """Restores the sums of an unfinished epoch (a finished one starts over anyway)."""
        if end_of_epoch:
            return
        state = torch.load(path)
        self.sums = defaultdict(float, state["sums"])
        self.batches = int(state["batches"])
        self._resumed_mid_epoch = True
