"""Which members of the clusters become pseudo-labelled training rows (step 6 of
:mod:`speechbrain_dino.pseudo_labels.labelling`): per-cluster quantile and score filters, an
optional global threshold for a target kept fraction, then the cluster size bounds.

Shapes: ``N`` utterances with cluster labels ``0..K-1`` and a confidence score each.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig


def select_members(
    labels: np.ndarray, scores: np.ndarray, config: PseudoLabelConfig
) -> Tuple[np.ndarray, Optional[float]]:
    """Which rows survive the member and cluster-size filters (module docstring, step 6).

    With ``keep_fraction``, the global score threshold is found by bisection over the observed
    scores: the kept count is non-increasing in the threshold (oversized clusters are subsampled,
    never dropped), so the result is the kept count closest to the target that the cluster
    granularity allows. If the other filters already keep fewer rows, no threshold is added.

    Arguments
    ---------
    labels : np.ndarray [N] int, 0..K-1
    scores : np.ndarray [N] float, higher = more confident member

    Returns
    -------
    kept : np.ndarray [N] bool
    score_threshold : float or None, the global threshold that ``keep_fraction`` chose
    """
    rank, size = _rank_within_clusters(labels, scores)
    candidate = rank < size - np.floor(config.member_quantile * size)
    if config.min_score is not None:
        candidate &= scores >= config.min_score
    threshold = None
    if config.keep_fraction is not None:
        threshold = _threshold_for_fraction(labels, scores, candidate, config)
        if threshold is not None:
            candidate &= scores >= threshold
    return _size_filtered(labels, scores, candidate, config.min_size, config.max_size), threshold


def _rank_within_clusters(
    labels: np.ndarray, scores: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Each row's rank in its cluster by descending score (0 = best) and its cluster's size.

    Returns
    -------
    rank, size : np.ndarray [N] int64 each (ties broken by row order).
    """
    order = np.lexsort((np.arange(len(labels)), -scores, labels))
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    counts = np.diff(np.r_[starts, len(labels)])
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.repeat(starts, counts)
    size = np.empty(len(labels), dtype=np.int64)
    size[order] = np.repeat(counts, counts)
    return rank, size


def _size_filtered(
    labels: np.ndarray,
    scores: np.ndarray,
    candidate: np.ndarray,
    min_size: int,
    max_size: Optional[int],
) -> np.ndarray:
    """Candidates [N] bool restricted to clusters of >= min_size, each cut to its max_size best."""
    rank, size = _rank_within_clusters(labels, np.where(candidate, scores, -np.inf))
    candidates_per_cluster = np.bincount(labels[candidate], minlength=labels.max() + 1)
    kept = candidate & (candidates_per_cluster[labels] >= min_size)
    return kept if max_size is None else kept & (rank < max_size)


def _kept_count(labels: np.ndarray, candidate: np.ndarray, config: PseudoLabelConfig) -> int:
    """How many candidates [N] bool the size filter would keep, without ranking."""
    counts = np.bincount(labels[candidate], minlength=labels.max() + 1)
    counts = counts[counts >= config.min_size]
    return int(np.minimum(counts, config.max_size).sum() if config.max_size else counts.sum())


def _threshold_for_fraction(
    labels: np.ndarray, scores: np.ndarray, candidate: np.ndarray, config: PseudoLabelConfig
) -> Optional[float]:
    """Global score threshold keeping about ``keep_fraction`` of the rows (None: not needed)."""
    target = config.keep_fraction * len(labels)
    if _kept_count(labels, candidate, config) <= target:
        return None
    levels = np.unique(scores[candidate])
    low, high = 0, len(levels) - 1  # kept(levels[low]) > target; find first level with <= target
    while low + 1 < high:
        middle = (low + high) // 2
        if _kept_count(labels, candidate & (scores >= levels[middle]), config) > target:
            low = middle
        else:
            high = middle
    above = _kept_count(labels, candidate & (scores >= levels[low]), config)
    below = _kept_count(labels, candidate & (scores >= levels[high]), config)
    return float(levels[low] if above - target < target - below else levels[high])
