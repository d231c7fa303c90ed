"""The clustering steps of pseudo-labelling, in cosine geometry (steps 1-5 of
:mod:`speechbrain_dino.pseudo_labels.labelling`): PCA, k-means over-clustering, agglomeration of
the k-means clusters, reassignment to the nearest speaker, the optional PLDA second pass, and the
members' confidence scores.

Shapes: ``N`` utterances, ``D`` (``D'`` after PCA) dimensions, ``K`` clusters.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from sklearn.decomposition import PCA

from speechbrain_dino.pseudo_labels.clustering import (
    agglomerate,
    agglomerate_groups,
    cluster_sums,
    kmeans,
    knn_edges,
    l2_normalize,
    nearest_neighbors,
)
from speechbrain_dino.pseudo_labels.config import AUTO, PseudoLabelConfig
from speechbrain_dino.pseudo_labels.plda import fit_plda, group_llr, member_posteriors
from speechbrain_dino.pseudo_labels.thresholds import ThresholdChoice, pair_share_threshold


def _kmeans_size(n_rows: int, ratio: float) -> int:
    """k-means centroid count for ``n_rows`` utterances."""
    return int(min(n_rows, max(1, round(ratio * n_rows))))


def reduce_dimension(x: np.ndarray, pca_variance: Optional[float], seed: int) -> np.ndarray:
    """Unit rows -> PCA keeping ``pca_variance`` of the variance (None: skip) -> unit rows.

    Arguments
    ---------
    x : np.ndarray [N, D]

    Returns
    -------
    np.ndarray [N, D'] float32, L2-normalised rows, D' <= D.
    """
    unit = l2_normalize(x)
    if pca_variance is None or pca_variance >= 1:
        return unit
    pca = PCA(n_components=pca_variance, svd_solver="covariance_eigh", random_state=seed)
    return l2_normalize(pca.fit_transform(unit))


def over_cluster(x: np.ndarray, config: PseudoLabelConfig, seed: int) -> np.ndarray:
    """Spherical k-means with C = kmeans_ratio x N centroids.

    Arguments
    ---------
    x : np.ndarray [N, D], L2-normalised rows

    Returns
    -------
    np.ndarray [N] int64, centroid index 0..C'-1 (C' <= C: empty centroids are dropped).
    """
    _, assignments = kmeans(
        x, _kmeans_size(len(x), config.kmeans_ratio), config.backend, config.kmeans_iter, seed
    )
    return np.unique(assignments, return_inverse=True)[1].astype(np.int64)


def merge_clusters(
    x: np.ndarray, assignments: np.ndarray, config: PseudoLabelConfig, seed: int = 0
) -> Tuple[np.ndarray, Optional[ThresholdChoice]]:
    """Agglomerates k-means clusters (their mean directions, weighted by size) into speakers, at
    ``config.ahc_threshold`` or, when it is ``"auto"``, at the threshold
    :func:`~speechbrain_dino.pseudo_labels.thresholds.pair_share_threshold` chooses.

    Arguments
    ---------
    x : np.ndarray [N, D], L2-normalised rows
    assignments : np.ndarray [N] int, k-means cluster 0..C-1, every cluster non-empty
    seed : int, for the pair sample of an automatic threshold

    Returns
    -------
    labels : np.ndarray [N] int64, 0..K-1
    choice : ThresholdChoice or None (a fixed threshold)
    """
    sums, counts = cluster_sums(x, assignments, int(assignments.max()) + 1)

    def agglomerate_at(threshold: float) -> np.ndarray:
        return agglomerate(sums, threshold, counts, config.knn, config.backend)

    if config.ahc_threshold != AUTO:
        return agglomerate_at(float(config.ahc_threshold))[assignments], None
    if len(sums) < 2:
        return np.zeros(len(x), dtype=np.int64), None
    choice = pair_share_threshold(sums, agglomerate_at, seed)
    return choice.labels[assignments], choice


def mean_directions(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit mean direction of every cluster's rows.

    Arguments
    ---------
    x : np.ndarray [N, D], L2-normalised rows
    labels : np.ndarray [N] int, 0..K-1

    Returns
    -------
    np.ndarray [K, D] float32, unit rows (zero for an empty cluster).
    """
    return l2_normalize(cluster_sums(x, labels, int(labels.max()) + 1)[0])


def reassign(x: np.ndarray, labels: np.ndarray, backend: str = "auto") -> np.ndarray:
    """Moves every row [N, D] to the cluster of most cosine-similar :func:`mean_directions`.

    Returns new labels [N] int64, 0..K'-1 (K' <= K: a cluster that loses all rows disappears).
    """
    _, nearest = nearest_neighbors(mean_directions(x, labels), x, 1, backend)
    return np.unique(nearest[:, 0], return_inverse=True)[1].astype(np.int64)


def plda_second_pass(
    x: np.ndarray, labels: np.ndarray, config: PseudoLabelConfig
) -> Tuple[np.ndarray, np.ndarray]:
    """PLDA fitted on ``labels``, PLDA-linkage agglomeration of the clusters, member posteriors.

    Arguments
    ---------
    x : np.ndarray [N, D], L2-normalised rows
    labels : np.ndarray [N] int, first-pass clusters 0..K-1

    Returns
    -------
    labels : np.ndarray [N] int64, merged clusters 0..K'-1 (K' <= K)
    posteriors : np.ndarray [N] float64, each row's PLDA posterior for its merged cluster
    """
    model = fit_plda(x, labels)
    y = model.project(x)
    sums, counts = cluster_sums(y, labels, int(labels.max()) + 1)
    first, second, _ = knn_edges(l2_normalize(sums), config.knn, -1.0, config.backend)
    merged = agglomerate_groups(
        sums, counts, first, second, config.plda_threshold, group_llr(model.psi)
    )[labels]
    return merged, member_posteriors(y, merged, model.psi, config.knn, config.backend)


def member_scores(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine of each row [N, D] to its cluster's mean direction (the posterior proxy), [N]."""
    return np.einsum("nd,nd->n", x, mean_directions(x, labels)[labels])
