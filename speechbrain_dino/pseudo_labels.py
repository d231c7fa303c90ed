"""Pseudo speaker labels from utterance embeddings (the paper's later public recipe).

Pipeline (:func:`pseudo_label`), all in cosine geometry:

1. L2-normalise, PCA keeping ``pca_variance`` of the variance (centred, not whitened),
   L2-normalise again.
2. Spherical k-means with C = ``kmeans_ratio`` x N centroids (over-clustering: ~4 utterances each).
3. Average-linkage agglomeration of the centroids, weighted by their sizes, on a sparse kNN graph
   (:func:`speechbrain_dino.clustering.agglomerate`), stopping at cosine ``ahc_threshold``. The
   number of speakers is not given: it comes out of the threshold. The right threshold depends
   on the embedding (the paper uses ~0.8 for its first round; a weaker embedding, e.g. a short
   CPU DINO run, has lower same-speaker cosines and needs a lower one).
4. ``refine="reassign"``: re-estimate each cluster's centroid (mean of its unit members) and move
   every utterance to the cluster whose centroid is most cosine-similar (one k-means step at
   speaker level, undoing k-means micro-cluster mistakes). ``"none"`` skips it.
5. Optional (``plda_second_pass``): fit a two-covariance PLDA on those clusters
   (:mod:`speechbrain_dino.plda`), agglomerate the clusters again with the PLDA log-likelihood
   ratio as linkage (stopping at ``plda_threshold``; 0 = "same speaker" as likely as not), and
   score each member by its PLDA posterior for its cluster against the nearest rivals.
6. Filtering. A member's score is that PLDA posterior after a second pass, otherwise its cosine
   to its cluster centroid (a proxy: a confident member sits close to its speaker's mean):
   drop members below ``min_score``, the lowest
   ``member_quantile`` of every cluster, then, when ``keep_fraction`` is set, everything under the
   global cosine threshold chosen so that about that fraction of all rows is finally kept. Then
   clusters smaller than ``min_size`` are dropped, and clusters larger than ``max_size`` are
   subsampled to their ``max_size`` most confident members (a large cluster is usually one
   prolific speaker; subsampling keeps it without letting it dominate the classifier).

Dropped utterances get label -1. :func:`relabel_rows` turns the labels into a manifest.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from speechbrain_dino.clustering import (
    agglomerate,
    agglomerate_groups,
    cluster_sums,
    kmeans,
    knn_edges,
    l2_normalize,
    nearest_neighbors,
    resolve_backend,
)
from speechbrain_dino.errors import DataError
from speechbrain_dino.manifest import Row
from speechbrain_dino.plda import fit_plda, group_llr, member_posteriors

REFINE_MODES = ("none", "reassign")


@dataclass
class PseudoLabelConfig:
    """Options of :func:`pseudo_label` (see the module docstring for each stage).

    Attributes
    ----------
    pca_variance : fraction of variance PCA keeps, or None for no PCA.
    kmeans_ratio : k-means centroids per utterance (C = round(ratio x N), at least 1). k-means
        costs N x C x D per iteration and dominates the run time: the paper's 1/4 is fine on a
        GPU or up to ~100k utterances on a few CPU cores (bench/results/cluster_scale.md); lower
        it for a million utterances on CPU.
    kmeans_iter : k-means iterations.
    backend : "auto" (faiss when importable), "faiss" or "sklearn".
    ahc_threshold : cosine similarity at which centroid agglomeration stops (embedding-dependent).
    knn : neighbours per centroid in the agglomeration graph.
    refine : "reassign" or "none".
    plda_second_pass : PLDA-scored second agglomeration and PLDA member posteriors.
    plda_threshold : log-likelihood ratio a second-pass merge must reach.
    min_score : drop members whose score (cosine to their cluster centroid, or PLDA posterior
        after a second pass) is below this (None: off).
    member_quantile : drop this lowest fraction of every cluster's members by cosine (0: off).
    keep_fraction : target fraction of all utterances kept after every filter (None: no target).
    min_size, max_size : cluster size bounds after member filtering (max_size None: unbounded).
    """

    pca_variance: Optional[float] = 0.99
    kmeans_ratio: float = 0.25
    kmeans_iter: int = 20
    backend: str = "auto"
    ahc_threshold: float = 0.8
    knn: int = 10
    refine: str = "reassign"
    plda_second_pass: bool = False
    plda_threshold: float = 0.0
    min_score: Optional[float] = None
    member_quantile: float = 0.0
    keep_fraction: Optional[float] = None
    min_size: int = 8
    max_size: Optional[int] = 50

    def validate(self) -> None:
        """Raises :class:`DataError` naming the first inconsistent option."""
        resolve_backend(self.backend)
        problems = [
            (self.pca_variance is not None and not 0 < self.pca_variance <= 1,
             "pca_variance must be in (0, 1] or None"),
            (not 0 < self.kmeans_ratio <= 1, "kmeans_ratio must be in (0, 1]"),
            (self.kmeans_iter < 1, "kmeans_iter must be >= 1"),
            (not -1 <= self.ahc_threshold <= 1, "ahc_threshold is a cosine in [-1, 1]"),
            (self.knn < 1, "knn must be >= 1"),
            (self.refine not in REFINE_MODES, f"refine must be one of {REFINE_MODES}"),
            (not 0 <= self.member_quantile < 1, "member_quantile must be in [0, 1)"),
            (self.keep_fraction is not None and not 0 < self.keep_fraction <= 1,
             "keep_fraction must be in (0, 1] or None"),
            (self.min_size < 1, "min_size must be >= 1"),
            (self.max_size is not None and self.max_size < self.min_size,
             "max_size must be >= min_size or None"),
        ]
        for failed, message in problems:
            if failed:
                raise DataError(f"pseudo-label config: {message}")


@dataclass
class PseudoLabels:
    """Result of :func:`pseudo_label`.

    Attributes
    ----------
    labels : np.ndarray [N] int64, cluster 0..K-1 per utterance, -1 where dropped.
    report : dict, JSON-serialisable summary (see :func:`pseudo_label`).
    """

    labels: np.ndarray
    report: Dict


def pseudo_label(
    embeddings: np.ndarray,
    config: Optional[PseudoLabelConfig] = None,
    seed: int = 0,
    true_labels: Optional[Sequence] = None,
) -> PseudoLabels:
    """Clusters utterance embeddings into filtered pseudo speaker labels.

    Arguments
    ---------
    embeddings : np.ndarray [N, D]
    config : PseudoLabelConfig, optional (defaults: the paper's settings)
    seed : int, for k-means (same seed, same backend, same labels)
    true_labels : sequence [N], optional, e.g. speaker ids, for the report's metrics

    Returns
    -------
    PseudoLabels
        ``report`` holds the k-means size (non-empty centroids), cluster counts before/after
        filtering, kept count and fraction, size summaries before/after, seconds per stage,
        and with ``true_labels``: NMI, ARI and purity ``before_filtering`` (all rows, clusters
        after refinement and before any row is dropped) and ``kept`` (kept rows only).
    """
    config = config or PseudoLabelConfig()
    config.validate()
    x = _checked(embeddings)
    truth = None if true_labels is None else np.asarray(true_labels)
    if truth is not None and truth.shape != (len(x),):
        raise DataError(f"true_labels has shape {truth.shape}, expected ({len(x)},)")
    seconds: Dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    reduced = reduce_dimension(x, config.pca_variance, seed)
    lap("pca")
    assignments = over_cluster(reduced, config, seed)
    lap("kmeans")
    clusters = merge_clusters(reduced, assignments, config)
    lap("agglomeration")
    if config.refine == "reassign":
        clusters = reassign(reduced, clusters, config.backend)
    lap("refine")
    first_pass_clusters = int(clusters.max()) + 1
    if config.plda_second_pass:
        clusters, scores = plda_second_pass(reduced, clusters, config)
        lap("plda")
    else:
        scores = member_scores(reduced, clusters)
    kept, score_threshold = select_members(clusters, scores, config)
    lap("filter")
    labels = np.full(len(x), -1, dtype=np.int64)
    labels[kept] = np.unique(clusters[kept], return_inverse=True)[1]
    report = {
        "utterances": len(x),
        "dims_after_pca": reduced.shape[1],
        "kmeans_clusters": int(assignments.max()) + 1,
        "clusters_after_first_pass": first_pass_clusters,
        "clusters_before_filtering": int(clusters.max()) + 1,
        "clusters_after_filtering": int(labels.max()) + 1,
        "kept": int(kept.sum()),
        "kept_fraction": float(kept.mean()),
        "score_threshold_for_keep_fraction": score_threshold,
        "sizes_before_filtering": size_summary(clusters),
        "sizes_after_filtering": size_summary(labels[kept]),
        "seconds": seconds,
        "seed": seed,
        "config": asdict(config),
    }
    if truth is not None:
        report["metrics"] = {
            "before_filtering": cluster_metrics(truth, clusters),
            "kept": cluster_metrics(truth[kept], labels[kept]) if kept.any() else None,
        }
    return PseudoLabels(labels, report)


def _checked(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings as float32 [N, D], or DataError for wrong shape, too few rows, non-finite."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"expected embeddings of shape [N >= 2, D], got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("embeddings contain NaN or infinite values")
    return x


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


def merge_clusters(x: np.ndarray, assignments: np.ndarray, config: PseudoLabelConfig) -> np.ndarray:
    """Agglomerates k-means clusters (their mean directions, weighted by size) into speakers.

    Arguments
    ---------
    x : np.ndarray [N, D], L2-normalised rows
    assignments : np.ndarray [N] int, k-means cluster 0..C-1, every cluster non-empty

    Returns
    -------
    np.ndarray [N] int64, labels 0..K-1.
    """
    sums, counts = cluster_sums(x, assignments, int(assignments.max()) + 1)
    centroid_labels = agglomerate(sums, config.ahc_threshold, counts, config.knn, config.backend)
    return centroid_labels[assignments]


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


def relabel_rows(
    rows: Sequence[Row], ids: Sequence[str], labels: np.ndarray, prefix: str = "pl"
) -> List[Row]:
    """Manifest rows with ``spk_id`` set to pseudo-labels; dropped rows (label -1) left out.

    The original ``spk_id`` (possibly empty) moves to a ``true_spk_id`` column (the report's
    metrics use it); a row that already has ``true_spk_id`` (an earlier round's output) keeps it.

    Arguments
    ---------
    rows : manifest rows (dicts with at least ``ID``)
    ids : sequence [N] of utterance IDs, in the order of ``labels``
    labels : np.ndarray [N] int, cluster per ID, -1 for dropped
    prefix : str, cluster ids are ``f"{prefix}{label:05d}"``

    Returns
    -------
    list of dict, new rows in the order of ``rows``.

    Raises
    ------
    DataError
        ``ids`` and ``labels`` differ in length, or a row's ID has no label.
    """
    if len(ids) != len(labels):
        raise DataError(f"{len(ids)} IDs but {len(labels)} labels")
    label_of = dict(zip(ids, np.asarray(labels).tolist()))
    relabelled = []
    for row in rows:
        if row["ID"] not in label_of:
            raise DataError(f"utterance {row['ID']!r} has no pseudo-label (was it embedded?)")
        label = label_of[row["ID"]]
        if label < 0:
            continue
        true_speaker = row.get("true_spk_id", row.get("spk_id", ""))
        relabelled.append(dict(row, spk_id=f"{prefix}{label:05d}", true_spk_id=true_speaker))
    return relabelled
