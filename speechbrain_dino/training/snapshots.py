"""Exports of a training run at chosen optimiser steps, beside its final ``pretrained/``.

A learning curve of a long run (the embedding at 5, 10, 20... minutes of one schedule) needs the
encoder as it was at those steps, not separate shorter runs, whose schedules would end earlier.
``export_steps: [S1, S2, ...]`` in a training YAML makes the recipe write
``<output_folder>/snapshots/step<S>/`` after optimiser step ``S``: a folder of the same form as
``pretrained/`` (``EncoderClassifier.from_hparams`` loads it), recording its step in
``speechbrain_dino.json``. Exporting reads no random number, so the run's trajectory is the same
with or without snapshots; a run resumed from a checkpoint before ``S`` writes the same snapshot
again.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, FrozenSet, Mapping, Optional

from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.export import Architecture

#: Folder of the snapshots inside a training run's output folder.
SNAPSHOTS_FOLDER = "snapshots"


@dataclasses.dataclass(frozen=True)
class SnapshotPlan:
    """The optimiser steps after which a run exports its encoder, and what the exports need.

    Attributes
    ----------
    steps : frozenset of int
        Optimiser steps (counted from 1 over the whole run) after which to export.
    folder : str
        ``<output_folder>/snapshots``.
    architecture : Architecture
        What the exported encoder is.
    metadata : dict
        Provenance written into every snapshot (as into ``pretrained/``).
    """

    steps: FrozenSet[int]
    folder: str
    architecture: Architecture
    metadata: Mapping[str, Any]

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], architecture: Architecture,
                     metadata: Mapping[str, Any]) -> Optional["SnapshotPlan"]:
        """The plan of a training YAML's ``export_steps`` (None when it has none).

        Raises
        ------
        DataError
            ``export_steps`` is not a list of positive integers.
        """
        steps = hparams.get("export_steps") or []
        if not isinstance(steps, (list, tuple)) or not all(
            isinstance(step, int) and not isinstance(step, bool) and step > 0 for step in steps
        ):
            raise DataError(f"--export_steps={steps!r}: expected a list of optimiser steps (integers >= 1)")
        if not steps:
            return None
        folder = os.path.join(hparams["output_folder"], SNAPSHOTS_FOLDER)
        return cls(frozenset(steps), folder, architecture, dict(metadata))

    def path(self, step: int) -> str:
        """The snapshot folder of optimiser step ``step``."""
        return os.path.join(self.folder, f"step{step}")

    def export_arguments(self, step: int) -> Dict[str, Any]:
        """Keyword arguments of ``EncoderBrain.export`` for the snapshot of ``step``."""
        return {"folder": self.path(step), "architecture": self.architecture,
                "metadata": {**self.metadata, "snapshot_step": step}}
