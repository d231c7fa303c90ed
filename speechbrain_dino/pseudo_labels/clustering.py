"""Clustering building blocks for pseudo-labels: k-means, nearest neighbours, agglomeration.

Everything here scales to a million 192-dim embeddings on one machine: nothing builds an N x N
(or C x C) matrix. k-means and nearest-neighbour search run on faiss when it is importable and
on scikit-learn otherwise, with the same interface and results of the same quality.

:func:`agglomerate` is average-linkage agglomerative clustering in cosine similarity, restricted
to the edges of a sparse k-nearest-neighbour graph. Because rows are L2-normalised, the weighted
average cosine between every pair of members of two groups A and B is exactly
``S_A . S_B / (W_A W_B)`` with ``S`` the weighted sum of member vectors and ``W`` the summed
weight, so each group is one running sum and every linkage value is exact: the graph only decides
which groups are ever compared (two groups are compared once any of their members are kNN
neighbours with cosine above the threshold). Merging stops when no connected pair reaches the
threshold, so the number of clusters comes out of the threshold, not from the caller.
"""
from __future__ import annotations

import heapq
from typing import Callable, List, Optional, Set, Tuple

import numpy as np
import scipy.sparse as sp

from speechbrain_dino.errors import DataError

BACKENDS = ("auto", "faiss", "sklearn")


def faiss_available() -> bool:
    """Whether ``import faiss`` works."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``"faiss"`` or ``"sklearn"`` for a requested backend (``"auto"`` prefers faiss).

    Raises
    ------
    DataError
        Unknown name, or ``"faiss"`` asked for while it is not installed.
    """
    if backend not in BACKENDS:
        raise DataError(f"clustering backend {backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        return "faiss" if faiss_available() else "sklearn"
    if backend == "faiss" and not faiss_available():
        raise DataError("backend 'faiss' requested but faiss is not installed "
                        "(pip install faiss-cpu, or use backend 'sklearn')")
    return backend


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero).

    Arguments
    ---------
    x : np.ndarray [N, D]

    Returns
    -------
    np.ndarray [N, D] float32, C-contiguous.
    """
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, np.finfo(np.float32).tiny))


def cluster_sums(
    x: np.ndarray, labels: np.ndarray, n_clusters: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-cluster sum of rows and member count, via one sparse product.

    Arguments
    ---------
    x : np.ndarray [N, D]
    labels : np.ndarray [N] int in ``[0, n_clusters)``
    n_clusters : int

    Returns
    -------
    sums : np.ndarray [n_clusters, D] float64
    counts : np.ndarray [n_clusters] int64
    """
    n_rows = len(labels)
    membership = sp.csr_matrix(
        (np.ones(n_rows), (labels, np.arange(n_rows))), shape=(n_clusters, n_rows)
    )
    sums = np.asarray(membership @ np.asarray(x, dtype=np.float64))
    return sums, np.bincount(labels, minlength=n_clusters).astype(np.int64)


def nearest_neighbors(
    base: np.ndarray, queries: np.ndarray, k: int, backend: str = "auto"
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``base`` by inner product for every query row.

    Both inputs should be L2-normalised (the inner product is then the cosine similarity, which
    the scikit-learn backend computes as ``1 - cosine distance``).

    Arguments
    ---------
    base : np.ndarray [M, D]
    queries : np.ndarray [Q, D]
    k : int, at most M
    backend : "auto", "faiss" or "sklearn"

    Returns
    -------
    similarities : np.ndarray [Q, k] float32, best first
    indices : np.ndarray [Q, k] int64 into ``base``
    """
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if resolve_backend(backend) == "faiss":
        import faiss

        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        similarities, indices = index.search(queries, k)
        return similarities, indices.astype(np.int64)
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine").fit(base)
    distances, indices = search.kneighbors(queries)
    return (1.0 - distances).astype(np.float32), indices.astype(np.int64)


def kmeans(
    x: np.ndarray,
    n_clusters: int,
    backend: str = "auto",
    n_iter: int = 20,
    seed: int = 0,
    spherical: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Lloyd k-means from ``n_clusters`` randomly drawn rows, with faiss or scikit-learn.

    Both backends start from random rows (k-means++ seeding at C = N/4 centroids would cost more
    than the iterations) and run at most ``n_iter`` iterations (scikit-learn may stop earlier on
    convergence). With ``spherical`` the rows are L2-normalised first, centroids are kept on the
    unit sphere and each row is assigned to the centroid of highest cosine similarity.

    Arguments
    ---------
    x : np.ndarray [N, D]
    n_clusters : int in [1, N]
    backend : "auto" (faiss when importable), "faiss" or "sklearn"
    n_iter : int
    seed : int
    spherical : bool

    Returns
    -------
    centroids : np.ndarray [C, D] float32 (C = n_clusters; unit rows when spherical)
    assignments : np.ndarray [N] int64, index of each row's nearest centroid
    """
    x = l2_normalize(x) if spherical else np.ascontiguousarray(x, dtype=np.float32)
    n_rows, dim = x.shape
    if not 1 <= n_clusters <= n_rows:
        raise DataError(f"k-means needs 1 <= n_clusters <= {n_rows} rows, got {n_clusters}")
    if resolve_backend(backend) == "faiss":
        import faiss

        trainer = faiss.Kmeans(
            dim, n_clusters, niter=n_iter, seed=seed, spherical=spherical,
            max_points_per_centroid=n_rows, min_points_per_centroid=1, verbose=False,
        )
        trainer.train(x)
        _, assignments = trainer.index.search(x, 1)
        return trainer.centroids.copy(), assignments[:, 0].astype(np.int64)
    from sklearn.cluster import KMeans

    start = x[np.random.default_rng(seed).choice(n_rows, n_clusters, replace=False)]
    fitted = KMeans(
        n_clusters, init=start, n_init=1, max_iter=n_iter, random_state=seed, algorithm="lloyd"
    ).fit(x)
    centroids = fitted.cluster_centers_.astype(np.float32)
    if not spherical:
        return centroids, fitted.labels_.astype(np.int64)
    centroids = l2_normalize(centroids)
    _, nearest = nearest_neighbors(centroids, x, 1, "sklearn")
    return centroids, nearest[:, 0]


def knn_edges(
    x: np.ndarray, k: int, min_similarity: float, backend: str = "auto"
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges of the k-nearest-neighbour graph with cosine at least ``min_similarity``.

    Arguments
    ---------
    x : np.ndarray [C, D], L2-normalised rows
    k : int, neighbours per row (self excluded)
    min_similarity : float
    backend : "auto", "faiss" or "sklearn"

    Returns
    -------
    first, second : np.ndarray [E] int64, ``first < second``, each pair once
    similarity : np.ndarray [E] float32
    """
    n_rows = len(x)
    similarity, neighbor = nearest_neighbors(x, x, min(k + 1, n_rows), backend)
    row = np.repeat(np.arange(n_rows), neighbor.shape[1])
    neighbor, similarity = neighbor.ravel(), similarity.ravel()
    valid = (neighbor >= 0) & (neighbor != row) & (similarity >= min_similarity)
    first = np.minimum(row[valid], neighbor[valid])
    second = np.maximum(row[valid], neighbor[valid])
    _, unique = np.unique(first * n_rows + second, return_index=True)
    return first[unique], second[unique], similarity[valid][unique]


def cosine_linkage(
    sums_a: np.ndarray, weight_a: np.ndarray, sums_b: np.ndarray, weight_b: np.ndarray
) -> np.ndarray:
    """Weighted average cosine between the members of groups A and B (module docstring).

    Arguments
    ---------
    sums_a, sums_b : np.ndarray [M, D] (or [D], broadcast), weighted sums of unit member vectors
    weight_a, weight_b : np.ndarray [M] (or scalar), summed member weights

    Returns
    -------
    np.ndarray [M]
    """
    return np.sum(sums_a * sums_b, axis=-1) / (weight_a * weight_b)


#: ``linkage(sums_a, weight_a, sums_b, weight_b) -> [M]``, broadcasting like :func:`cosine_linkage`;
#: higher means "more likely the same cluster".
Linkage = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def agglomerate(
    centroids: np.ndarray,
    threshold: float,
    weights: Optional[np.ndarray] = None,
    knn: int = 10,
    backend: str = "auto",
) -> np.ndarray:
    """Average-linkage clustering in cosine similarity on a sparse kNN graph (module docstring).

    Repeatedly merges the connected pair of groups with the highest weighted average cosine
    similarity between their members, until no connected pair reaches ``threshold``. Memory is
    O(C * (D + knn)); no C x C matrix is built.

    Arguments
    ---------
    centroids : np.ndarray [C, D], e.g. k-means centroids (L2-normalised here)
    threshold : float, cosine similarity a merge must reach (embedding-dependent)
    weights : np.ndarray [C], optional, e.g. k-means cluster sizes (default all 1)
    knn : int, neighbours per centroid in the candidate graph
    backend : "auto", "faiss" or "sklearn", for the neighbour search

    Returns
    -------
    np.ndarray [C] int64, cluster labels 0..K-1 (K found from the threshold)
    """
    unit = l2_normalize(centroids)
    n_items = len(unit)
    weight = np.ones(n_items) if weights is None else np.asarray(weights, dtype=np.float64)
    if weight.shape != (n_items,) or np.any(weight <= 0):
        raise DataError(f"agglomerate needs {n_items} positive weights, got shape {weight.shape}")
    first, second, _ = knn_edges(unit, knn, threshold, backend)
    sums = unit.astype(np.float64) * weight[:, None]
    return agglomerate_groups(sums, weight, first, second, threshold, cosine_linkage)


def agglomerate_groups(
    sums: np.ndarray,
    weight: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    threshold: float,
    linkage: Linkage,
) -> np.ndarray:
    """Greedy agglomeration of groups described by sufficient statistics, on a candidate graph.

    Repeatedly merges the connected pair of groups with the highest ``linkage`` until no
    connected pair reaches ``threshold``; a merged group's statistics are the sums of its parts
    and its neighbours the union of theirs.

    Arguments
    ---------
    sums : np.ndarray [C, D] float64, each item's summed vectors (a copy is updated)
    weight : np.ndarray [C] float64, each item's weight or member count (a copy is updated)
    first, second : np.ndarray [E] int, the candidate edges (each pair once)
    threshold : float
    linkage : :data:`Linkage`

    Returns
    -------
    np.ndarray [C] int64, cluster labels 0..K-1
    """
    sums = np.array(sums, dtype=np.float64)
    weight = np.array(weight, dtype=np.float64)
    n_items = len(sums)
    value = linkage(sums[first], weight[first], sums[second], weight[second])
    reach = value >= threshold
    first, second, value = first[reach], second[reach], value[reach]
    neighbors: List[Set[int]] = [set() for _ in range(n_items)]
    for a, b in zip(first.tolist(), second.tolist()):
        neighbors[a].add(b)
        neighbors[b].add(a)
    stamp = [0] * n_items
    heap = [(-v, a, b, 0, 0) for v, a, b in zip(value.tolist(), first.tolist(), second.tolist())]
    heapq.heapify(heap)
    merged_into = np.arange(n_items)
    while heap:
        _, a, b, stamp_a, stamp_b = heapq.heappop(heap)
        if stamp[a] != stamp_a or stamp[b] != stamp_b:
            continue
        keep, gone = (a, b) if len(neighbors[a]) >= len(neighbors[b]) else (b, a)
        merged_into[gone] = keep
        sums[keep] += sums[gone]
        weight[keep] += weight[gone]
        stamp[keep] += 1
        stamp[gone] += 1
        for other in neighbors[gone]:
            neighbors[other].discard(gone)
            if other != keep:
                neighbors[other].add(keep)
        neighbors[keep] |= neighbors[gone]
        neighbors[keep] -= {keep, gone}
        neighbors[gone] = set()
        _push_linkages(heap, keep, neighbors[keep], sums, weight, stamp, threshold, linkage)
    return _roots_as_labels(merged_into)


def _push_linkages(
    heap: list,
    group: int,
    group_neighbors: Set[int],
    sums: np.ndarray,
    weight: np.ndarray,
    stamp: List[int],
    threshold: float,
    linkage: Linkage,
) -> None:
    """Pushes ``group``'s linkage to each neighbour that reaches the threshold."""
    if not group_neighbors:
        return
    others = np.fromiter(group_neighbors, dtype=np.int64, count=len(group_neighbors))
    values = linkage(sums[others], weight[others], sums[group], weight[group])
    for other, value in zip(others[values >= threshold].tolist(),
                            values[values >= threshold].tolist()):
        heapq.heappush(heap, (-value, group, other, stamp[group], stamp[other]))


def _roots_as_labels(merged_into: np.ndarray) -> np.ndarray:
    """Follows merge pointers [C] to each item's final group; returns labels 0..K-1 [C]."""
    roots = merged_into.copy()
    while True:
        parents = roots[roots]
        if np.array_equal(parents, roots):
            break
        roots = parents
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)
