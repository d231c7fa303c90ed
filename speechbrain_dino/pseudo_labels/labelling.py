"""Pseudo speaker labels from utterance embeddings (the paper's later public recipe).

Pipeline (:func:`pseudo_label`), all in cosine geometry:

1. L2-normalise, PCA keeping ``pca_variance`` of the variance (centred, not whitened),
   L2-normalise again.
2. Spherical k-means with C = ``kmeans_ratio`` x N centroids (over-clustering: ~4 utterances each).
3. Average-linkage agglomeration of the centroids, weighted by their sizes, on a sparse kNN graph
   (:func:`speechbrain_dino.pseudo_labels.clustering.agglomerate`), stopping at cosine ``ahc_threshold``. The
   number of speakers is not given: it comes out of the threshold. The right threshold depends
   on the embedding (the paper uses ~0.8 for its first round; a weaker embedding, e.g. a short
   CPU DINO run, has lower same-speaker cosines and needs a lower one), so ``"auto"`` chooses it
   from the centroids' pair cosines (:mod:`speechbrain_dino.pseudo_labels.thresholds`).
4. ``refine="reassign"``: re-estimate each cluster's centroid (mean of its unit members) and move
   every utterance to the cluster whose centroid is most cosine-similar (one k-means step at
   speaker level, undoing k-means micro-cluster mistakes). ``"none"`` skips it.
5. Optional (``plda_second_pass``): fit a two-covariance PLDA on those clusters
   (:mod:`speechbrain_dino.pseudo_labels.plda`), agglomerate the clusters again with the PLDA log-likelihood
   ratio as linkage (stopping at ``plda_threshold``; 0 = "same speaker" as likely as not), and
   score each member by its PLDA posterior for its cluster against the nearest rivals.
6. Filtering. A member's score is that PLDA posterior after a second pass, otherwise its cosine
   to its cluster centroid (a proxy: a confident member sits close to its speaker's mean):
   drop members below ``min_score``, the lowest
   ``member_quantile`` of every cluster, then, when ``keep_fraction`` is set, everything under the
   global cosine threshold chosen so that about that fraction of all rows is finally kept. Then
   clusters smaller than ``min_size`` (``"auto"``: half the typical cluster size) are dropped, and clusters larger than ``max_size`` are
   subsampled to their ``max_size`` most confident members (a large cluster is usually one
   prolific speaker; subsampling keeps it without letting it dominate the classifier).

Dropped utterances get label -1.
:func:`speechbrain_dino.pseudo_labels.outputs.relabel_rows` turns the labels into a manifest.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, Optional, Sequence

import numpy as np

from speechbrain_dino.errors import DataError
from speechbrain_dino.pseudo_labels.config import AUTO, PseudoLabelConfig
from speechbrain_dino.pseudo_labels.filtering import select_members
from speechbrain_dino.pseudo_labels.metrics import cluster_metrics, size_summary
from speechbrain_dino.pseudo_labels.refinement import (
    member_scores,
    merge_clusters,
    over_cluster,
    plda_second_pass,
    reassign,
    reduce_dimension,
)
from speechbrain_dino.pseudo_labels.thresholds import ThresholdChoice, typical_size_floor


@dataclass
class PseudoLabels:
    """Result of :func:`pseudo_label`.

    Attributes
    ----------
    labels : np.ndarray [N] int64, cluster 0..K-1 per utterance, -1 where dropped.
    report : dict, JSON-serialisable summary (see :func:`pseudo_label`).
    clusters : np.ndarray [N] int64, every utterance's cluster before filtering (0..K'-1, K' >= K).
    scores : np.ndarray [N] float, the member scores the filters read (module docstring, step 6).
    """

    labels: np.ndarray
    report: Dict
    clusters: np.ndarray
    scores: np.ndarray


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
    clusters, threshold_choice = merge_clusters(reduced, assignments, config, seed)
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
    chosen = {"ahc_threshold": _chosen_threshold(config, threshold_choice)}
    filter_config = config
    if config.min_size == AUTO:
        filter_config = replace(config, min_size=typical_size_floor(clusters))
        chosen["min_size"] = {"value": filter_config.min_size, "chosen_by": "half the row-weighted median cluster size"}
    else:
        chosen["min_size"] = {"value": config.min_size, "chosen_by": "fixed"}
    kept, score_threshold = select_members(clusters, scores, filter_config)
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
        "chosen_settings": chosen,
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
    return PseudoLabels(labels, report, clusters, scores)


def _checked(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings as float32 [N, D], or DataError for wrong shape, too few rows, non-finite."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"expected embeddings of shape [N >= 2, D], got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("embeddings contain NaN or infinite values")
    return x


def _chosen_threshold(config: PseudoLabelConfig, choice: Optional[ThresholdChoice]) -> Dict:
    """The report's account of the agglomeration threshold: its value and how it was chosen."""
    if choice is None:
        return {"value": config.ahc_threshold, "chosen_by": "fixed"}
    return {
        "value": choice.threshold,
        "chosen_by": "self-consistent share of random centroid pairs above it",
        "within_cluster_pair_share": choice.within_share,
        "effective_clusters": choice.effective_clusters,
        "iterations": choice.history,
    }
