"""Clustering thresholds chosen from the embeddings themselves (``"auto"`` settings).

Users cluster corpora whose number of speakers and utterances per speaker nobody knows, and the
right cosine threshold depends on the encoder (a short CPU run's same-speaker cosines are far
lower than a converged model's). Two settings are therefore derived from the data; no label is
read.

**Agglomeration threshold** (:func:`pair_share_threshold`). Take the k-means centroids of the
over-clustering and the cosines of random pairs of distinct centroids. A threshold ``t`` calls a
share ``q(t)`` of those pairs "same speaker"; agglomerating the centroids at ``t`` gives a
clustering whose clusters of ``c_k`` centroids hold a share
``w(t) = sum_k c_k (c_k - 1) / (C (C - 1))`` of the pairs. Where speakers are separated, the
clustering explains the pairs above the threshold (``w(t) ~ q(t)``) all along the gap between
same- and different-speaker cosines; below the gap, pairs of different speakers pass the threshold
without the clustering following them. The search starts at the threshold of the top ``1 / C``
of the pairs (about one partner above it per centroid: the over-clustering gives a speaker of
eight or more utterances two or more centroids) and lowers it, admitting a quarter more pairs
each step, while the clustering still explains at least ``EXPLAINED`` (90%) of the pairs above it;
it keeps the lowest threshold that did. On planted speakers it lands in the gap; on real encoders,
where the two cosine distributions overlap and the clustering never explains 90% of the pairs
(bench/clustering_study.py), it keeps the top-``1 / C`` threshold, which came within 0.9-1.15
times the true number of speakers there.

**Minimum cluster size** (:func:`typical_size_floor`). Half the size of the cluster that holds a
typical utterance (the row-weighted median cluster size), at least 2: a cluster smaller than half
a typical speaker's is most likely a fragment of a split speaker or a group of outliers.

Shapes: ``C`` centroids, ``D`` dimensions, ``N`` utterances.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List

import numpy as np

from speechbrain_dino.pseudo_labels.clustering import l2_normalize

#: Random centroid pairs whose cosines estimate the pair-cosine distribution.
MAX_PAIRS = 1_000_000
#: The share of the pairs above the threshold that the clustering must hold to go lower.
EXPLAINED = 0.9
#: Each step admits this many times more pairs.
SHARE_STEP = 1.25
#: The most pairs a threshold may call "same speaker" (half: two speakers at the most).
MAX_SHARE = 0.5


@dataclass
class ThresholdChoice:
    """The agglomeration threshold :func:`pair_share_threshold` chose, and how.

    Attributes
    ----------
    threshold : float, the cosine at which agglomeration stops.
    within_share : float, the within-cluster share of distinct centroid pairs at that threshold.
    effective_clusters : float, ``1 / within_share`` (about the number of equal clusters with that
        share; at most ``C``).
    labels : np.ndarray [C] int, the centroids' clusters at that threshold.
    history : list of [threshold, share of pairs above it, within-cluster share] per step tried.
    """

    threshold: float
    within_share: float
    effective_clusters: float
    labels: np.ndarray
    history: List[List[float]] = field(default_factory=list)


def random_pair_cosines(centroids: np.ndarray, seed: int, max_pairs: int = MAX_PAIRS) -> np.ndarray:
    """Cosines of distinct centroid pairs [C, D]: all of them when there are at most
    ``max_pairs``, else ``max_pairs`` pairs drawn uniformly (with replacement) among them."""
    unit = l2_normalize(np.asarray(centroids, dtype=np.float32))
    count = len(unit)
    if count < 2:
        raise ValueError("a pair-share threshold needs at least two centroids")
    if count * (count - 1) // 2 <= max_pairs:
        first, second = np.triu_indices(count, 1)
    else:
        rng = np.random.default_rng(seed)
        first = rng.integers(0, count, max_pairs)
        second = (first + rng.integers(1, count, max_pairs)) % count  # never the same centroid
    return np.einsum("pd,pd->p", unit[first], unit[second])


def within_cluster_share(labels: np.ndarray) -> float:
    """Share of the distinct pairs of the ``C`` labels [C] that lie in one cluster:
    ``sum_k c_k (c_k - 1) / (C (C - 1))`` for cluster sizes ``c_k`` (0 when all are alone)."""
    sizes = np.bincount(labels).astype(np.float64)
    count = len(labels)
    return float((sizes * (sizes - 1)).sum() / max(count * (count - 1), 1))


def pair_share_threshold(
    centroids: np.ndarray, agglomerate_at: Callable[[float], np.ndarray], seed: int = 0
) -> ThresholdChoice:
    """The agglomeration threshold of the module docstring.

    Arguments
    ---------
    centroids : np.ndarray [C, D], the k-means centroids (or their member sums)
    agglomerate_at : threshold -> [C] cluster labels of the centroids (the agglomeration to be run)
    seed : int, for the pair sample

    Returns
    -------
    ThresholdChoice
    """
    cosines = random_pair_cosines(centroids, seed)
    share = 1.0 / len(centroids)
    history: List[List[float]] = []
    chosen = None
    while share <= MAX_SHARE:
        threshold = float(np.quantile(cosines, 1.0 - share))
        labels = agglomerate_at(threshold)
        within = within_cluster_share(labels)
        history.append([threshold, share, within])
        if chosen is not None and within < EXPLAINED * share:
            break
        chosen = (threshold, within, labels)
        share *= SHARE_STEP
    threshold, within, labels = chosen
    return ThresholdChoice(threshold, within, 1.0 / max(within, 1.0 / len(centroids)), labels, history)


def typical_size_floor(labels: np.ndarray) -> int:
    """Half the row-weighted median cluster size of labels [N] (0..K-1), rounded up, at least 2."""
    sizes = np.bincount(labels)[labels]
    return max(2, int(np.ceil(np.median(sizes) / 2)))
