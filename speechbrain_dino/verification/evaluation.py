"""Speaker verification of an embedding table: trials -> scores -> normalised scores -> metrics.

Puts together :mod:`~speechbrain_dino.verification.trials` (reading),
:mod:`~speechbrain_dino.verification.scoring` (cosine, AS-norm with a cohort of speaker means) and
:mod:`~speechbrain_dino.verification.metrics` (EER, minDCF, DET), and writes what a user looks at:
per-trial score files, a DET plot and ``results.json``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from speechbrain_dino.data.manifest import Row, read_manifest
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.inference.embeddings import EmbeddingTable
from speechbrain_dino.verification.bootstrap import DRAWS, Interval, SpeakerBootstrap, TrialSpeakers
from speechbrain_dino.verification.metrics import plot_det, verification_metrics
from speechbrain_dino.verification.scoring import as_norm, cosine_scores, speaker_means
from speechbrain_dino.verification.trials import Trials, read_scores, same_trials, write_trials

logger = logging.getLogger(__name__)


@dataclass
class VerificationResult:
    """Scores and metrics of one system on one trial list.

    ``metrics`` maps ``"raw"`` (and ``"as_norm"`` when a cohort was given) to
    :func:`verification_metrics` dicts; ``scores`` maps the same keys to ``[M]`` score arrays.
    """

    trials: Trials
    scores: Dict[str, np.ndarray] = field(default_factory=dict)
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    normalisation: str = "none"


def read_cohort(
    path: PathLike, top_n: Optional[int], replacements: Optional[Mapping[str, str]] = None
) -> List[Row]:
    """The rows of a cohort manifest for score normalisation, checked with the AS-norm size.

    Arguments
    ---------
    path : PathLike
        Labelled manifest (``spk_id`` of at least 2 speakers), e.g. training speakers.
    top_n : int, optional
        AS-norm cohort size per side: at least 2, or None for S-norm over the whole cohort.
    replacements : mapping, optional
        ``{"data_root": DIR}`` for ``$data_root`` in ``wav`` paths.
    """
    rows = read_manifest(path, required=("ID", "duration", "wav", "spk_id"), replacements=replacements)
    if len({row["spk_id"] for row in rows} - {""}) < 2:
        raise DataError("a cohort needs labelled rows of at least 2 speakers (spk_id)", path)
    if top_n is not None and top_n < 2:
        raise DataError(f"as_norm_top_n must be >= 2 or null, got {top_n}")
    return rows


def cohort_means(table: EmbeddingTable, rows: Sequence[Row]) -> np.ndarray:
    """``[S, D]`` mean unit embedding of each cohort speaker (unlabelled rows left out).

    ``table`` embeds ``rows`` (same order).
    """
    return speaker_means(table.vectors, [row["spk_id"] for row in rows])[0]


def verify(
    table: EmbeddingTable,
    trials: Trials,
    cohort: Optional[np.ndarray] = None,
    top_n: Optional[int] = 300,
    speakers: Optional[Sequence[str]] = None,
    bootstrap_draws: int = 0,
) -> VerificationResult:
    """Scores a trial list with cosine similarity, and with AS-norm when a cohort is given.

    Arguments
    ---------
    table : EmbeddingTable
        Embeddings of every utterance the trials name.
    trials : Trials
        The trial list, read (:func:`~speechbrain_dino.verification.trials.read_trials`) against
        the ids of ``table`` before embedding, so that a bad list fails before that work.
    cohort : np.ndarray, optional
        ``[C, D]`` cohort embeddings (e.g. training speakers' means) for adaptive S-norm.
    top_n : int, optional
        AS-norm cohort size per side; None for plain S-norm over the whole cohort.
    speakers : sequence of str, optional
        ``[N]`` the speaker of every row of ``table``: with ``bootstrap_draws`` > 0, every kind of
        score also gets ``EER_interval_95``, the EER's 95% interval over that many resamplings of
        the test speakers (:mod:`~speechbrain_dino.verification.bootstrap`; the same draws for
        every system scored with the same seed, so systems can be compared draw by draw).
    bootstrap_draws : int
    """
    if list(trials.ids) != list(table.ids):
        raise ValueError("the trials index another embedding table (read them against table.ids)")
    result = VerificationResult(trials)
    raw = cosine_scores(table.vectors, trials.enrol, trials.test)
    result.scores["raw"] = raw
    result.metrics["raw"] = verification_metrics(raw, trials.labels)
    if cohort is not None:
        normalised = as_norm(raw, table.vectors, trials.enrol, trials.test, cohort, top_n=top_n)
        result.scores["as_norm"] = normalised
        result.metrics["as_norm"] = verification_metrics(normalised, trials.labels)
        result.normalisation = "s-norm" if top_n is None else f"as-norm top-{top_n}"
    if speakers is not None and bootstrap_draws > 0:
        row_speakers = np.asarray(speakers, dtype=str)
        bootstrap = SpeakerBootstrap(
            trials.labels, TrialSpeakers.from_speakers(row_speakers[trials.enrol], row_speakers[trials.test]),
            bootstrap_draws,
        )
        for kind, scores in result.scores.items():
            interval = bootstrap.interval(scores)
            result.metrics[kind]["EER_interval_95"] = [interval.low, interval.high]
    return result


def write_outputs(results: Dict[str, VerificationResult], output_folder: PathLike, main: str) -> Dict:
    """Writes score files, ``det.png`` (all systems) and ``results.json``; returns the JSON dict.

    ``results.json`` holds the main system's raw-score metrics at top level (``EER`` in percent,
    ``minDCF_0.01``, ``minDCF_0.05``, ``n_trials``), its normalised ones under ``"as_norm"``, and
    every other system's metrics under ``"baselines"``. Per-trial scores go to
    ``scores_<system>_<kind>.txt``.
    """
    folder = os.fspath(output_folder)
    os.makedirs(folder, exist_ok=True)
    curves = {}
    for system, result in results.items():
        for kind, scores in result.scores.items():
            write_trials(result.trials, score_file(folder, system, kind), scores)
            curves[f"{system} ({kind})"] = (scores, result.trials.labels)
    plot_det(curves, os.path.join(folder, "det.png"), title="speaker verification")
    summary: Dict = dict(results[main].metrics["raw"])
    summary["normalisation"] = results[main].normalisation
    if "as_norm" in results[main].metrics:
        summary["as_norm"] = results[main].metrics["as_norm"]
    summary["baselines"] = {
        system: result.metrics for system, result in results.items() if system != main
    }
    with open(os.path.join(folder, "results.json"), "w", encoding="utf-8") as fout:
        json.dump(summary, fout, indent=2)
    return summary


def score_file(output_folder: PathLike, system: str, kind: str = "raw") -> str:
    """The per-trial score file of ``system`` (``kind``: ``raw`` or ``as_norm``) in an output folder."""
    return os.path.join(os.fspath(output_folder), f"scores_{system}_{kind}.txt")


def results_line(result: VerificationResult) -> str:
    """One line for the console: EER and minDCF, raw and normalised."""
    parts = []
    for kind, metrics in result.metrics.items():
        interval = metrics.get("EER_interval_95")
        shown = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
        parts.append(
            f"{kind}: EER {metrics['EER']:.2f}%{shown} minDCF(0.01) {metrics['minDCF_0.01']:.3f} "
            f"minDCF(0.05) {metrics['minDCF_0.05']:.3f}"
        )
    return f"{len(result.trials)} trials | " + " | ".join(parts)


def manifest_speakers(rows: Sequence[Row]) -> Optional[List[str]]:
    """Every row's ``spk_id`` (for the EER's bootstrap interval), or None, said in the log, when
    the manifest leaves some row without one."""
    speakers = [row.get("spk_id") or "" for row in rows]
    if all(speakers):
        return speakers
    logger.info("%d of %d test rows have no spk_id: no bootstrap interval for the EER",
                speakers.count(""), len(speakers))
    return None


def paired_eer_change(
    reference_file: PathLike, system_file: PathLike, speaker_of: Mapping[str, str], draws: int = DRAWS
) -> Interval:
    """The relative EER change (percent) of a system against a reference scored on the same
    trials, from their per-trial score files, with the interval of the paired speaker bootstrap
    (:mod:`~speechbrain_dino.verification.bootstrap`).

    Arguments
    ---------
    reference_file, system_file : PathLike
        ``label enrol test score`` files of the same trials in the same order.
    speaker_of : mapping of utterance id to speaker id, for every utterance of the trials
    draws : int

    Raises
    ------
    DataError
        The two files score different trials.
    """
    reference, reference_scores = read_scores(reference_file)
    trials, scores = read_scores(system_file)
    if not same_trials(reference, trials):
        raise DataError(f"scores other trials than {os.fspath(reference_file)}", system_file)
    sides = TrialSpeakers.of(trials.enrol_ids, trials.test_ids, speaker_of)
    return SpeakerBootstrap(trials.labels, sides, draws).change(reference_scores, scores)
