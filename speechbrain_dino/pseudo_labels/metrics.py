"""How good a clustering is: sizes, and agreement with true labels (NMI, ARI, purity).

True labels are only ever reported: no clustering step reads them.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def size_summary(labels: np.ndarray) -> Dict:
    """Cluster count, size quantiles and a power-of-two size histogram.

    Arguments
    ---------
    labels : np.ndarray [N] int >= 0 (no -1)

    Returns
    -------
    dict
        ``{"clusters", "size_quantiles": {"min","q10","median","q90","max"},
        "size_histogram": {"1-1": n, "2-3": n, "4-7": n, ...}}``.
    """
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    sizes = sizes[sizes > 0]
    if not len(sizes):
        return {"clusters": 0, "size_quantiles": {}, "size_histogram": {}}
    quantiles = np.quantile(sizes, [0, 0.1, 0.5, 0.9, 1])
    octave = np.bincount(np.floor(np.log2(sizes)).astype(np.int64))
    return {
        "clusters": len(sizes),
        "size_quantiles": dict(zip(("min", "q10", "median", "q90", "max"),
                                   (float(q) for q in quantiles))),
        "size_histogram": {f"{2 ** i}-{2 ** (i + 1) - 1}": int(n)
                           for i, n in enumerate(octave) if n},
    }


def purity(true_labels: Sequence, cluster_labels: Sequence) -> float:
    """Fraction of rows whose cluster's majority true label is their own.

    Arguments
    ---------
    true_labels, cluster_labels : sequences [N] of hashable labels (any types)

    Returns
    -------
    float in (0, 1]; 1 when every cluster holds a single true label.
    """
    truth = np.unique(np.asarray(true_labels), return_inverse=True)[1].astype(np.int64)
    clusters = np.unique(np.asarray(cluster_labels), return_inverse=True)[1].astype(np.int64)
    pairs, pair_counts = np.unique(clusters * (truth.max() + 1) + truth, return_counts=True)
    pair_cluster = pairs // (truth.max() + 1)
    starts = np.flatnonzero(np.r_[True, pair_cluster[1:] != pair_cluster[:-1]])
    return float(np.maximum.reduceat(pair_counts, starts).sum() / len(truth))


def cluster_metrics(true_labels: Sequence, cluster_labels: Sequence) -> Dict[str, float]:
    """NMI (arithmetic normalisation), ARI (scikit-learn) and :func:`purity` of a clustering.

    Arguments
    ---------
    true_labels, cluster_labels : sequences [N]

    Returns
    -------
    dict ``{"nmi", "ari", "purity", "rows"}``.
    """
    return {
        "nmi": float(normalized_mutual_info_score(true_labels, cluster_labels)),
        "ari": float(adjusted_rand_score(true_labels, cluster_labels)),
        "purity": purity(true_labels, cluster_labels),
        "rows": len(true_labels),
    }
