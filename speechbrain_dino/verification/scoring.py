"""Cosine scoring of trials and score normalisation against a cohort (S-norm, AS-norm).

Embeddings are L2-normalised once; a trial's score is the dot product of its two rows, computed
in chunks of gathered rows (as a batched ``[1, D] @ [D, 1]`` product, faster than multiply then
sum) so that a million trials need a few hundred MB at most. Cohort statistics are computed once
per distinct utterance of the trial list (not once per trial) as a matrix product with the
cohort, keeping the ``top_n`` highest scores with ``torch.topk``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Trials scored per chunk (two gathered ``[chunk, D]`` blocks).
TRIAL_CHUNK = 1 << 16
#: Cohort scores held at once (utterances per chunk times cohort size).
COHORT_SCORES_PER_CHUNK = 1 << 24
#: Floor of a cohort standard deviation, so a degenerate cohort cannot divide by zero.
MIN_STD = 1e-6


def unit_rows(vectors: ArrayLike) -> torch.Tensor:
    """``[N, D]`` float32 tensor with each row scaled to unit L2 norm."""
    vectors = torch.as_tensor(vectors, dtype=torch.float32).detach()
    return torch.nn.functional.normalize(vectors, dim=1)


def cosine_scores(embeddings: ArrayLike, enrol: ArrayLike, test: ArrayLike) -> np.ndarray:
    """Cosine similarity of each trial's two embeddings.

    Arguments
    ---------
    embeddings : array
        ``[N, D]`` embedding table.
    enrol, test : array
        ``[M]`` integer rows of ``embeddings`` (``Trials.enrol``, ``Trials.test``).

    Returns
    -------
    np.ndarray
        ``[M]`` float32 scores in [-1, 1].
    """
    table = unit_rows(embeddings)
    enrol = torch.as_tensor(enrol, dtype=torch.long)
    test = torch.as_tensor(test, dtype=torch.long)
    scores = torch.empty(len(enrol), dtype=torch.float32)
    for start in range(0, len(enrol), TRIAL_CHUNK):
        stop = start + TRIAL_CHUNK
        enrol_rows = table[enrol[start:stop]].unsqueeze(1)
        test_rows = table[test[start:stop]].unsqueeze(2)
        scores[start:stop] = torch.bmm(enrol_rows, test_rows).view(-1)
    return scores.numpy()


def speaker_means(
    embeddings: ArrayLike, spk_ids: Sequence[str]
) -> Tuple[np.ndarray, List[str]]:
    """Mean of each speaker's L2-normalised embeddings: a score-normalisation cohort.

    Arguments
    ---------
    embeddings : array
        ``[N, D]`` embeddings, e.g. of the training manifest.
    spk_ids : sequence of str
        ``[N]`` speaker of each row; rows with an empty speaker are left out.

    Returns
    -------
    cohort : np.ndarray
        ``[S, D]`` float32, one row per speaker, in the order of ``speakers``.
    speakers : list of str
        ``[S]`` sorted speaker ids.
    """
    if len(spk_ids) != len(embeddings):
        raise ValueError(f"{len(spk_ids)} speaker ids for {len(embeddings)} embeddings")
    labelled = np.flatnonzero(np.asarray(spk_ids, dtype=object) != "")
    if not len(labelled):
        raise ValueError("no row has a speaker id: cannot build a cohort")
    speakers, owner = np.unique(np.asarray(spk_ids, dtype=object)[labelled], return_inverse=True)
    vectors = unit_rows(embeddings)[torch.as_tensor(labelled)]
    owner = torch.as_tensor(owner)
    sums = torch.zeros(len(speakers), vectors.shape[1]).index_add_(0, owner, vectors)
    counts = torch.bincount(owner, minlength=len(speakers)).unsqueeze(1)
    return (sums / counts).numpy(), [str(speaker) for speaker in speakers]


def cohort_statistics(
    vectors: ArrayLike, cohort: ArrayLike, top_n: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each vector's ``top_n`` highest cosine cohort scores.

    Arguments
    ---------
    vectors : array
        ``[R, D]`` embeddings.
    cohort : array
        ``[C, D]`` cohort embeddings.
    top_n : int, optional
        Highest scores kept per vector (at least 2, at most C); None keeps the whole cohort.

    Returns
    -------
    mean, std : torch.Tensor
        ``[R]`` each; std is the population standard deviation, floored at ``MIN_STD``.
    """
    vectors, cohort = unit_rows(vectors), unit_rows(cohort)
    keep = len(cohort) if top_n is None else min(top_n, len(cohort))
    if keep < 2:
        raise ValueError(f"score normalisation needs at least 2 cohort scores, got {keep}")
    mean, std = torch.empty(len(vectors)), torch.empty(len(vectors))
    chunk = max(1, COHORT_SCORES_PER_CHUNK // len(cohort))
    for start in range(0, len(vectors), chunk):
        scores = vectors[start : start + chunk] @ cohort.T
        if keep < len(cohort):
            scores = torch.topk(scores, keep, dim=1, sorted=False).values
        std_part, mean_part = torch.std_mean(scores, dim=1, correction=0)
        mean[start : start + chunk], std[start : start + chunk] = mean_part, std_part
    return mean, std.clamp(min=MIN_STD)


def as_norm(
    scores: ArrayLike,
    embeddings: ArrayLike,
    enrol: ArrayLike,
    test: ArrayLike,
    cohort: ArrayLike,
    top_n: Optional[int] = 300,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm; S-norm when ``top_n`` is None).

    Each side of a trial is z-normalised with the statistics of its own top-N cohort scores and
    the two are averaged: ``0.5 * ((s - mean_e) / std_e + (s - mean_t) / std_t)``.

    Arguments
    ---------
    scores : array
        ``[M]`` raw cosine scores of the trials.
    embeddings : array
        ``[N, D]`` embedding table the trials index.
    enrol, test : array
        ``[M]`` integer rows of ``embeddings``.
    cohort : array
        ``[C, D]`` cohort embeddings (e.g. :func:`speaker_means` of the training set).
    top_n : int, optional
        Cohort scores kept per utterance; None uses the whole cohort (S-norm).

    Returns
    -------
    np.ndarray
        ``[M]`` float32 normalised scores.
    """
    enrol, test = np.asarray(enrol), np.asarray(test)
    rows, position = np.unique(np.concatenate([enrol, test]), return_inverse=True)
    table = torch.as_tensor(embeddings, dtype=torch.float32)
    mean, std = cohort_statistics(table[torch.as_tensor(rows)], cohort, top_n)
    enrol_at = torch.as_tensor(position[: len(enrol)])
    test_at = torch.as_tensor(position[len(enrol) :])
    raw = torch.as_tensor(scores, dtype=torch.float32)
    normalised = 0.5 * (
        (raw - mean[enrol_at]) / std[enrol_at] + (raw - mean[test_at]) / std[test_at]
    )
    return normalised.numpy()

