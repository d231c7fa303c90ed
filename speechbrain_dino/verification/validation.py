"""Verification EER of a model while it trains, so users see whether DINO is learning.

A :class:`TrialValidator` is built once from a small manifest and trial list; each call embeds the
manifest with the modules it is given (the teacher backbone during DINO) and scores the trials by
cosine similarity. It costs one extraction pass over the validation set per epoch. At the end of
training it also gives the decision threshold at the EER point (:meth:`TrialValidator.decision_threshold`),
which the exported model records.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from speechbrain_dino.data.manifest import Row, read_manifest
from speechbrain_dino.errors import PathLike
from speechbrain_dino.inference.embeddings import embed_segments, plan_segments
from speechbrain_dino.inference.export import DecisionThreshold
from speechbrain_dino.verification.metrics import equal_error_rate, error_counts, verification_metrics
from speechbrain_dino.verification.scoring import cosine_scores
from speechbrain_dino.verification.trials import Trials, read_trials


def eer_point(vectors: np.ndarray, trials: Trials) -> Tuple[float, float]:
    """EER (fraction) of ``trials`` scored by cosine over ``vectors`` ``[N, D]`` (rows in
    ``trials.ids`` order), and the cosine threshold at that point (accept above it)."""
    scores = cosine_scores(vectors, trials.enrol, trials.test)
    return equal_error_rate(error_counts(scores, trials.labels))


class TrialValidator:
    """EER / minDCF of an encoder on a fixed trial list.

    Arguments
    ---------
    rows : sequence of dict
        Validation utterances (``ID``, ``duration``, ``wav``), speakers disjoint from the test set.
    trials : Trials
        Trials over those rows (``trials.ids`` in the order of ``rows``).
    sample_rate : int
        Audio rate of the model.
    resample : bool
        Resample files at other rates (as the training data pipeline does).
    max_batch_seconds : float, optional
        Padded audio per extraction batch (None: automatic for the device).
    chunk_seconds : float, optional
        Utterances longer than this are embedded in chunks and averaged.
    """

    def __init__(
        self,
        rows: Sequence[Row],
        trials: Trials,
        sample_rate: int = 16000,
        resample: bool = False,
        max_batch_seconds: Optional[float] = None,
        chunk_seconds: Optional[float] = 30.0,
    ) -> None:
        self.n_utterances = len(rows)
        self.trials = trials
        self.segments = plan_segments(rows, sample_rate, chunk_seconds=chunk_seconds)
        self.sample_rate = sample_rate
        self.resample = resample
        self.max_batch_seconds = max_batch_seconds

    @classmethod
    def from_files(
        cls, manifest: PathLike, trials: PathLike, replacements: Optional[Mapping[str, str]] = None, **options
    ) -> "TrialValidator":
        """The validator of a manifest (``ID,duration,wav,...``) and a trial list (``label enrol
        test`` lines over its IDs); ``replacements`` (``{"data_root": DIR}``) for ``$data_root`` in
        its ``wav`` paths, ``options`` as for the constructor."""
        rows = read_manifest(manifest, required=("ID", "duration", "wav"), replacements=replacements)
        return cls(rows, read_trials(trials, [row["ID"] for row in rows]), **options)

    def embed(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> np.ndarray:
        """The ``[N, D]`` embeddings of the rows by ``modules`` (in eval mode, restored after)."""
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
        return vectors

    def scores(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> np.ndarray:
        """The ``[M]`` cosine scores of the trials by ``modules``."""
        return cosine_scores(self.embed(modules, device), self.trials.enrol, self.trials.test)

    def __call__(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> Dict[str, float]:
        """The validation metrics of ``modules``.

        Returns
        -------
        dict
            ``EER`` (percent), ``minDCF_0.01``, ``minDCF_0.05``, ``n_trials``, ...
        """
        return verification_metrics(self.scores(modules, device), self.trials.labels)

    def decision_threshold(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> DecisionThreshold:
        """The cosine threshold at the EER point of the trials (accept a pair scoring above it),
        as the export records it (source ``validation_trials``, with the trial counts and the EER)."""
        eer, threshold = eer_point(self.embed(modules, device), self.trials)
        n_target = int(self.trials.labels.sum())
        details = {"target_trials": n_target, "nontarget_trials": len(self.trials) - n_target, "eer_percent": 100 * eer}
        return DecisionThreshold(threshold, "validation_trials", details)
