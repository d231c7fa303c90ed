"""The options of pseudo-labelling, checked before any work starts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

from speechbrain_dino.errors import DataError
from speechbrain_dino.pseudo_labels.clustering import resolve_backend

REFINE_MODES = ("none", "reassign")
#: The value of a setting that is chosen from the data (:mod:`speechbrain_dino.pseudo_labels.thresholds`).
AUTO = "auto"


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
    ahc_threshold : cosine similarity at which centroid agglomeration stops (embedding-dependent),
        or ``"auto"``: the largest self-consistent threshold of the centroids' pair cosines
        (:func:`~speechbrain_dino.pseudo_labels.thresholds.pair_share_threshold`).
    knn : neighbours per centroid in the agglomeration graph.
    refine : "reassign" or "none".
    plda_second_pass : PLDA-scored second agglomeration and PLDA member posteriors.
    plda_threshold : log-likelihood ratio a second-pass merge must reach.
    min_score : drop members whose score (cosine to their cluster centroid, or PLDA posterior
        after a second pass) is below this (None: off).
    member_quantile : drop this lowest fraction of every cluster's members by cosine (0: off).
    keep_fraction : target fraction of all utterances kept after every filter (None: no target).
    min_size, max_size : cluster size bounds after member filtering (max_size None: unbounded);
        min_size ``"auto"``: half the typical cluster size, at least 2
        (:func:`~speechbrain_dino.pseudo_labels.thresholds.typical_size_floor`).
    """

    pca_variance: Optional[float] = 0.99
    kmeans_ratio: float = 0.25
    kmeans_iter: int = 20
    backend: str = "auto"
    ahc_threshold: Union[float, str] = 0.8
    knn: int = 10
    refine: str = "reassign"
    plda_second_pass: bool = False
    plda_threshold: float = 0.0
    min_score: Optional[float] = None
    member_quantile: float = 0.0
    keep_fraction: Optional[float] = None
    min_size: Union[int, str] = 8
    max_size: Optional[int] = 50

    def validate(self) -> None:
        """Raises :class:`DataError` naming the first inconsistent option."""
        resolve_backend(self.backend)
        problems = [
            (self.pca_variance is not None and not 0 < self.pca_variance <= 1,
             "pca_variance must be in (0, 1] or None"),
            (not 0 < self.kmeans_ratio <= 1, "kmeans_ratio must be in (0, 1]"),
            (self.kmeans_iter < 1, "kmeans_iter must be >= 1"),
            (not _is_auto_or(self.ahc_threshold, lambda t: -1 <= t <= 1),
             f"ahc_threshold is a cosine in [-1, 1] or {AUTO!r}, got {self.ahc_threshold!r}"),
            (self.knn < 1, "knn must be >= 1"),
            (self.refine not in REFINE_MODES, f"refine must be one of {REFINE_MODES}"),
            (not 0 <= self.member_quantile < 1, "member_quantile must be in [0, 1)"),
            (self.keep_fraction is not None and not 0 < self.keep_fraction <= 1,
             "keep_fraction must be in (0, 1] or None"),
            (not _is_auto_or(self.min_size, lambda m: isinstance(m, int) and m >= 1),
             f"min_size must be an integer >= 1 or {AUTO!r}, got {self.min_size!r}"),
            (self.max_size is not None and isinstance(self.min_size, int) and self.max_size < self.min_size,
             "max_size must be >= min_size or None"),
        ]
        for failed, message in problems:
            if failed:
                raise DataError(f"pseudo-label config: {message}")


def _is_auto_or(value: object, valid: Callable[[float], bool]) -> bool:
    """True for ``"auto"`` or a number (not a bool) that ``valid`` accepts."""
    if value == AUTO:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and valid(value)
