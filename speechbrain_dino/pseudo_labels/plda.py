"""Two-covariance PLDA for the pseudo-labels' optional second pass (the authors' PLDA-based AHC).

Model (Ioffe 2006; the "two-covariance" PLDA): an embedding is ``x = m + s + e`` with the
speaker variable ``s ~ N(0, B)`` shared by all of a speaker's utterances and the utterance
noise ``e ~ N(0, W)``. :func:`fit_plda` estimates ``B`` and ``W`` from (pseudo-)labels and
diagonalises both at once: ``y = (x - m) V`` with ``V^T W V = I`` and ``V^T B V = diag(psi)``.

In that space every dimension is independent, and a group of ``n`` embeddings with sum ``S``
has the log marginal likelihood (per dimension, up to terms in ``sum y^2`` that cancel below)

    f(S, n) = 1/2 [ psi S^2 / (1 + n psi) - log(1 + n psi) ]

so the log-likelihood ratio "A and B are one speaker" vs "two speakers" is
``f(S_A + S_B, n_A + n_B) - f(S_A, n_A) - f(S_B, n_B)`` (:func:`group_llr`), and the
log predictive of one embedding under a group is ``f(S + y, n + 1) - f(S, n)`` plus a term that
is the same for every group (:func:`member_posteriors`). Only sums and counts are needed, so the
agglomeration keeps one running sum per group, exactly as the cosine one does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from speechbrain_dino.errors import DataError
from speechbrain_dino.pseudo_labels.clustering import cluster_sums, l2_normalize, nearest_neighbors

#: Rows per block in :func:`member_posteriors` (bounds its memory: block x candidates x D).
POSTERIOR_BLOCK_ROWS = 8192


@dataclass
class PLDA:
    """A fitted two-covariance PLDA in its diagonal form.

    Attributes
    ----------
    mean : np.ndarray [D] float64, the mean of the speaker means
    transform : np.ndarray [D, D] float64, ``V``: within-class covariance -> identity
    psi : np.ndarray [D] float64, between-class variances in the transformed space (> 0)
    """

    mean: np.ndarray
    transform: np.ndarray
    psi: np.ndarray

    def project(self, x: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] -> transformed [N, D] float64 (within-class covariance identity)."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.transform


def fit_plda(x: np.ndarray, labels: np.ndarray, ridge: float = 1e-6) -> PLDA:
    """Estimates the two-covariance PLDA from labelled embeddings (moment estimates).

    Classes with fewer than 2 members are ignored. ``W`` is the pooled within-class covariance;
    ``B`` the covariance of the class means minus their expected sampling noise
    (``mean(1/n_k) W``), so a class mean estimated from few members does not inflate it.

    Arguments
    ---------
    x : np.ndarray [N, D]
    labels : np.ndarray [N] int >= 0
    ridge : float, added to W's diagonal, relative to its average variance

    Returns
    -------
    PLDA

    Raises
    ------
    DataError
        Fewer than 2 classes with at least 2 members, or too few rows to estimate W.
    """
    x = np.asarray(x, dtype=np.float64)
    sums, counts = cluster_sums(x, labels, int(labels.max()) + 1)
    usable = counts >= 2
    n_classes, n_rows = int(usable.sum()), int(counts[usable].sum())
    if n_classes < 2 or n_rows - n_classes < 2:
        raise DataError(
            f"PLDA needs at least 2 clusters with >= 2 members (got {n_classes}); "
            "lower ahc_threshold (larger first-pass clusters) or set plda_second_pass: False"
        )
    members = usable[labels]
    class_means = sums[usable] / counts[usable, None]
    scatter = x[members].T @ x[members] - (class_means * counts[usable, None]).T @ class_means
    within = scatter / (n_rows - n_classes)
    within += np.eye(len(within)) * ridge * np.trace(within) / len(within)
    mean = class_means.mean(axis=0)
    centred = class_means - mean
    between = centred.T @ centred / n_classes - np.mean(1.0 / counts[usable]) * within
    psi, transform = scipy.linalg.eigh((between + between.T) / 2, within)
    order = np.argsort(psi)[::-1]
    return PLDA(mean, transform[:, order], np.maximum(psi[order], 1e-6))


def group_log_likelihood(sums: np.ndarray, counts: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """``f(S, n)`` of the module docstring, summed over dimensions.

    Arguments
    ---------
    sums : np.ndarray [..., D], transformed-space sums
    counts : np.ndarray [...], member counts (broadcast against ``sums[..., 0]``)
    psi : np.ndarray [D]

    Returns
    -------
    np.ndarray [...]
    """
    scale = 1.0 + np.asarray(counts, dtype=np.float64)[..., None] * psi
    return 0.5 * np.sum(psi * sums**2 / scale - np.log(scale), axis=-1)


def group_llr(psi: np.ndarray):
    """The PLDA log-likelihood ratio as an agglomeration linkage.

    Returns a :data:`speechbrain_dino.pseudo_labels.clustering.Linkage`:
    ``(sums_a, n_a, sums_b, n_b) -> log p(A and B one speaker) - log p(A, B two speakers)``.
    """

    def linkage(sums_a, count_a, sums_b, count_b):
        return (
            group_log_likelihood(sums_a + sums_b, np.add(count_a, count_b), psi)
            - group_log_likelihood(sums_a, count_a, psi)
            - group_log_likelihood(sums_b, count_b, psi)
        )

    return linkage


def member_posteriors(
    y: np.ndarray, labels: np.ndarray, psi: np.ndarray, candidates: int = 10, backend: str = "auto"
) -> np.ndarray:
    """Posterior of each row's own cluster against its ``candidates`` most likely rivals.

    Each row is scored under its own cluster with itself left out, and under the clusters whose
    mean directions are nearest to it (in the transformed space); equal priors. A singleton's own
    cluster is empty after leaving it out, so its score is the "new speaker" likelihood.

    Arguments
    ---------
    y : np.ndarray [N, D], transformed embeddings (:meth:`PLDA.project`)
    labels : np.ndarray [N] int, 0..K-1
    psi : np.ndarray [D]
    candidates : int, clusters compared per row (own included)
    backend : neighbour search backend

    Returns
    -------
    np.ndarray [N] float64 in (0, 1]
    """
    sums, counts = cluster_sums(y, labels, int(labels.max()) + 1)
    _, nearest = nearest_neighbors(
        l2_normalize(sums), l2_normalize(y), min(candidates, len(sums)), backend
    )
    own = labels[:, None]
    nearest[:, -1:] = np.where((nearest == own).any(axis=1, keepdims=True), nearest[:, -1:], own)
    posteriors = np.empty(len(y))
    for start in range(0, len(y), POSTERIOR_BLOCK_ROWS):
        rows = slice(start, start + POSTERIOR_BLOCK_ROWS)
        block, cand = y[rows, None, :], nearest[rows]
        is_own = cand == own[rows]
        group_sums = sums[cand] - is_own[..., None] * block
        group_counts = counts[cand] - is_own
        log_predictive = group_log_likelihood(
            group_sums + block, group_counts + 1, psi
        ) - group_log_likelihood(group_sums, group_counts, psi)
        log_predictive -= log_predictive.max(axis=1, keepdims=True)
        weights = np.exp(log_predictive)
        posteriors[rows] = (weights * is_own).sum(axis=1) / weights.sum(axis=1)
    return posteriors
