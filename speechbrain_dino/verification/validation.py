"""Verification EER of a model while it trains, so users see whether DINO is learning.

A :class:`TrialValidator` is built once from a small manifest and trial list; each call embeds the
manifest with the modules it is given (the teacher backbone during DINO) and scores the trials by
cosine similarity. It costs one extraction pass over the validation set per epoch. At the end of
training it also gives the decision threshold at the EER point (:meth:`TrialValidator.eer_threshold`),
which the exported model records.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np
import torch

from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.errors import PathLike
from speechbrain_dino.inference.embeddings import embed_segments, plan_segments
from speechbrain_dino.verification.metrics import equal_error_rate, error_counts, verification_metrics
from speechbrain_dino.verification.scoring import cosine_scores
from speechbrain_dino.verification.trials import read_trials


class TrialValidator:
    """EER / minDCF of an encoder on a fixed trial list.

    Arguments
    ---------
    manifest : PathLike
        Validation utterances (``ID,duration,wav,...``), speakers disjoint from the test set.
    trials : PathLike
        ``label enrol test`` lines over those IDs.
    sample_rate : int
        Audio rate of the model.
    resample : bool
        Resample files at other rates (as the training data pipeline does).
    max_batch_seconds : float, optional
        Padded audio per extraction batch (None: automatic for the device).
    chunk_seconds : float, optional
        Utterances longer than this are embedded in chunks and averaged.
    replacements : mapping, optional
        ``{"data_root": DIR}`` for ``$data_root`` in the manifest's ``wav`` paths.
    """

    def __init__(
        self,
        manifest: PathLike,
        trials: PathLike,
        sample_rate: int = 16000,
        resample: bool = False,
        max_batch_seconds: Optional[float] = None,
        chunk_seconds: Optional[float] = 30.0,
        replacements: Optional[Mapping[str, str]] = None,
    ) -> None:
        rows = read_manifest(manifest, required=("ID", "duration", "wav"), replacements=replacements)
        self.n_utterances = len(rows)
        self.trials = read_trials(trials, [row["ID"] for row in rows])
        self.segments = plan_segments(rows, sample_rate, chunk_seconds=chunk_seconds)
        self.sample_rate = sample_rate
        self.resample = resample
        self.max_batch_seconds = max_batch_seconds

    def scores(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> np.ndarray:
        """Embeds the validation set with ``modules`` (in eval mode, restored after) and returns the
        ``[M]`` cosine scores of the trials."""
        was_training = {name: module.training for name, module in modules.items()}
        for module in modules.values():
            module.eval()
        try:
            vectors = embed_segments(
                modules,
                device,
                self.segments,
                self.n_utterances,
                sample_rate=self.sample_rate,
                resample=self.resample,
                max_batch_seconds=self.max_batch_seconds,
                progress=False,
            )
        finally:
            for name, module in modules.items():
                module.train(was_training[name])
        return cosine_scores(vectors, self.trials.enrol, self.trials.test)

    def __call__(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> Dict[str, float]:
        """The validation metrics of ``modules``.

        Returns
        -------
        dict
            ``EER`` (percent), ``minDCF_0.01``, ``minDCF_0.05``, ``n_trials``, ...
        """
        return verification_metrics(self.scores(modules, device), self.trials.labels)

    def eer_threshold(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> float:
        """The cosine threshold at the EER point of the trials (accept a pair scoring above it)."""
        return equal_error_rate(error_counts(self.scores(modules, device), self.trials.labels))[1]
