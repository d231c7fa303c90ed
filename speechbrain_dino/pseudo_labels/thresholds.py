"""Clustering thresholds chosen from the embeddings themselves (``"auto"`` settings).

Users cluster corpora whose number of speakers and utterances per speaker nobody knows, and the
right cosine threshold depends on the encoder (a short CPU run's same-speaker cosines are far
lower than a converged model's). Two settings are therefore derived from the data; no label is
read.

**Agglomeration threshold** (:func:`pair_share_threshold`). Take the k-means centroids of the
over-clustering and the cosines of random pairs of distinct centroids. If a clustering of those
centroids into speakers has shares ``p_k`` of the centroids, two centroids drawn at random lie in
one cluster with probability ``sum_k p_k^2`` (the Simpson index; ``1 / S`` for ``S`` equal
clusters). A threshold ``t`` is *self-consistent* when the share of random pairs whose cosine
exceeds ``t`` equals the Simpson index of the clustering that agglomerating at ``t`` produces:
the pairs the threshold calls "same speaker" are as many as the clustering implies. The search
starts with every centroid alone (index ``1 / C``: the top ``1 / C`` of the pairs, about one
partner per centroid) and alternates *threshold from share* and *share from clustering*; the
threshold can only fall and the clustering only coarsen, so it stops at the first fixed point
from above. The index counts a centroid drawn twice as a same-cluster pair, which distinct pairs
cannot match: that offset of about ``1 / C`` moves the search off the trivial fixed point at
``t = 1``, and it errs towards merging (on planted speakers it finds 0.7-1.3 times their number
when they are separable; many very small speakers next to a few large ones come out merged).

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
#: Fixed-point iterations at most (it usually settles in 3-10).
MAX_ITERATIONS = 50


@dataclass
class ThresholdChoice:
    """The agglomeration threshold :func:`pair_share_threshold` chose, and how.

    Attributes
    ----------
    threshold : float, the cosine at which agglomeration stops.
    within_share : float, the within-cluster pair share of the clustering at that threshold.
    effective_clusters : float, ``1 / within_share`` (about the number of equal clusters with that share).
    history : list of [threshold, within_share] per iteration.
    """

    threshold: float
    within_share: float
    effective_clusters: float
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
    """Probability that two distinct centroids drawn at random share a cluster:
    ``sum_k c_k (c_k - 1) / (C (C - 1))`` for the clusters' sizes ``c_k`` among the ``C`` labels
    [C] (about ``sum_k p_k^2`` for their shares ``p_k``; 0 when every centroid is alone)."""
    shares = np.bincount(labels) / len(labels)
    return float(np.square(shares).sum())


def pair_share_threshold(
    centroids: np.ndarray, agglomerate_at: Callable[[float], np.ndarray], seed: int = 0
) -> ThresholdChoice:
    """The largest self-consistent agglomeration threshold (module docstring).

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
    share = 1.0 / len(centroids)  # every centroid alone
    history: List[List[float]] = []
    for _ in range(MAX_ITERATIONS):
        threshold = float(np.quantile(cosines, 1.0 - share))
        new_share = within_cluster_share(agglomerate_at(threshold))
        history.append([threshold, new_share])
        if new_share <= share * (1 + 1e-9):
            break
        share = new_share
    return ThresholdChoice(threshold, new_share, 1.0 / max(new_share, 1e-12), history)


def typical_size_floor(labels: np.ndarray) -> int:
    """Half the row-weighted median cluster size of labels [N] (0..K-1), rounded up, at least 2."""
    sizes = np.bincount(labels)[labels]
    return max(2, int(np.ceil(np.median(sizes) / 2)))
