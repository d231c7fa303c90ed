"""Verification metrics (EER, minDCF) and DET curves from trial scores and labels.

The metrics follow ``speechbrain.utils.metric_stats.EER`` and ``minDCF`` exactly: a trial is
accepted when its score is above the threshold, the thresholds are the distinct scores, the
EER is ``(P_fa + P_miss) / 2`` at the threshold where the two are closest (the lowest such
threshold), and the DCF uses ``c_miss = c_fa = 1``. Those functions loop over thresholds
(EER) or build a thresholds x trials matrix (minDCF), quadratic in the trial count (a 37k-trial
VoxCeleb1-O list would need ~10 GB); here one sort and two cumulative sums give every operating
point, so a million trials take about a second. The minDCF is reported normalised by
``min(c_miss * p_target, c_fa * (1 - p_target))``, as in the NIST / VoxSRC definition and the
papers' tables (SpeechBrain returns it unnormalised). The tests check agreement with both
SpeechBrain and scikit-learn's ROC.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from speechbrain_dino.errors import PathLike

logger = logging.getLogger(__name__)

#: Target priors of the reported minDCFs.
DCF_TARGET_PRIORS = (0.01, 0.05)
#: Error rates marked on the DET axes (fractions).
DET_TICKS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)
#: Operating points kept per curve: one per step of this size on the probit axes.
DET_RESOLUTION = 0.005


@dataclass(frozen=True)
class ErrorCounts:
    """Errors at every distinct score taken as threshold (accept when score > threshold).

    Attributes
    ----------
    thresholds : np.ndarray
        ``[T]`` distinct scores, ascending.
    misses : np.ndarray
        ``[T]`` int64, target trials scoring at or below the threshold.
    false_alarms : np.ndarray
        ``[T]`` int64, non-target trials scoring above the threshold.
    n_target, n_nontarget : int
        Trials of each class.
    """

    thresholds: np.ndarray
    misses: np.ndarray
    false_alarms: np.ndarray
    n_target: int
    n_nontarget: int

    @property
    def p_miss(self) -> np.ndarray:
        """``[T]`` miss rate."""
        return self.misses / self.n_target

    @property
    def p_fa(self) -> np.ndarray:
        """``[T]`` false-alarm rate."""
        return self.false_alarms / self.n_nontarget


def score_order(scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The ascending (stable) order of ``scores`` [M], and in that order the last position of
    every distinct score (the thresholds: a trial is accepted above one)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    return order, np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))


def error_counts(scores: np.ndarray, labels: np.ndarray) -> ErrorCounts:
    """Misses and false alarms at every threshold, from one sort of the scores.

    Arguments
    ---------
    scores : np.ndarray
        ``[M]`` finite scores, higher meaning more likely the same speaker.
    labels : np.ndarray
        ``[M]`` 1 for target trials, 0 for non-target trials.

    Raises
    ------
    ValueError
        Length mismatch, labels other than 0/1, non-finite scores, or a class with no trial
        (neither EER nor minDCF is defined then).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape}: need equal 1-D shapes")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 1 (target) or 0 (non-target)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    n_target = int(labels.sum())
    n_nontarget = len(labels) - n_target
    if n_target == 0 or n_nontarget == 0:
        raise ValueError(
            f"verification metrics need target and non-target trials; got {n_target} target "
            f"and {n_nontarget} non-target"
        )
    order, last_of_value = score_order(scores)
    is_target = labels[order].astype(np.int64)
    targets_at_or_below = np.cumsum(is_target)[last_of_value]
    nontargets_at_or_below = last_of_value + 1 - targets_at_or_below
    return ErrorCounts(
        thresholds=scores[order][last_of_value],
        misses=targets_at_or_below,
        false_alarms=n_nontarget - nontargets_at_or_below,
        n_target=n_target,
        n_nontarget=n_nontarget,
    )


def equal_error_rate(counts: ErrorCounts) -> Tuple[float, float]:
    """EER (fraction) and its threshold, as ``speechbrain.utils.metric_stats.EER`` defines them.

    The gap ``|P_fa - P_miss|`` is compared exactly in integers (cross-multiplied counts).
    """
    gap = np.abs(counts.false_alarms * counts.n_target - counts.misses * counts.n_nontarget)
    best = int(np.argmin(gap))
    eer = (counts.p_fa[best] + counts.p_miss[best]) / 2
    return float(eer), float(counts.thresholds[best])


def min_dcf(
    counts: ErrorCounts, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> Tuple[float, float]:
    """Normalised minimum detection cost and its threshold.

    ``min_t (c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target))`` divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better trivial system.
    """
    cost = c_miss * counts.p_miss * p_target + c_fa * counts.p_fa * (1 - p_target)
    best = int(np.argmin(cost))
    return float(cost[best] / min(c_miss * p_target, c_fa * (1 - p_target))), float(
        counts.thresholds[best]
    )


def verification_metrics(scores: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """The reported numbers of a scored trial list.

    Arguments
    ---------
    scores : np.ndarray
        ``[M]`` trial scores.
    labels : np.ndarray
        ``[M]`` 1 target / 0 non-target.

    Returns
    -------
    dict
        ``EER`` (percent), ``minDCF_0.01`` and ``minDCF_0.05`` (normalised, c_miss = c_fa = 1),
        ``n_trials``, ``n_target``.
    """
    counts = error_counts(scores, labels)
    metrics: Dict[str, float] = {"EER": 100 * equal_error_rate(counts)[0]}
    for p_target in DCF_TARGET_PRIORS:
        metrics[f"minDCF_{p_target}"] = min_dcf(counts, p_target)[0]
    metrics.update(n_trials=len(scores), n_target=counts.n_target)
    return metrics


def plot_det(
    systems: Mapping[str, Tuple[np.ndarray, np.ndarray]], path: PathLike, title: str = ""
) -> Optional[str]:
    """Draws the DET curves of several systems on one PNG, with probit (normal deviate) axes.

    Arguments
    ---------
    systems : mapping
        ``{name: (scores [M], labels [M])}``; each curve is labelled with its EER, whose
        point is marked on the diagonal.
    path : PathLike
        PNG to write; its folder is created.
    title : str
        Figure title.

    Returns
    -------
    str or None
        ``path``, or None when matplotlib (the ``plots`` extra) is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("no DET plot: matplotlib is missing (pip install speechbrain-dino[plots])")
        return None
    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    lowest = DET_TICKS[-1]
    for name, (scores, labels) in systems.items():
        counts = error_counts(scores, labels)
        eer = equal_error_rate(counts)[0]
        lowest = min(lowest, 1 / counts.n_target, 1 / counts.n_nontarget)
        fa_axis, miss_axis = _det_points(counts)
        line = axes.plot(fa_axis, miss_axis, label=f"{name} (EER {100 * eer:.2f}%)")[0]
        eer_axis = _probit(np.array([eer]))
        axes.plot(eer_axis, eer_axis, "o", color=line.get_color())
    ticks = [tick for tick in DET_TICKS if tick >= lowest / 2]
    limits = _probit(np.array([ticks[0], ticks[-1]]))
    axes.plot(limits, limits, ":", color="gray", linewidth=0.8)
    for set_ticks, set_labels, set_limits in (
        (axes.set_xticks, axes.set_xticklabels, axes.set_xlim),
        (axes.set_yticks, axes.set_yticklabels, axes.set_ylim),
    ):
        set_ticks(_probit(np.array(ticks)))
        set_labels([f"{100 * tick:g}" for tick in ticks], fontsize=8)
        set_limits(*limits)
    axes.set_xlabel("False acceptance rate (%)")
    axes.set_ylabel("False rejection rate (%)")
    axes.set_title(title)
    axes.grid(True, linewidth=0.4)
    axes.legend(loc="upper right", fontsize=8)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _probit(rates: np.ndarray) -> np.ndarray:
    """Normal deviates of rates, clipped away from 0 and 1 (where they are infinite)."""
    clipped = torch.as_tensor(np.clip(rates, 1e-7, 1 - 1e-7), dtype=torch.float64)
    return torch.special.ndtri(clipped).numpy()


def _det_points(counts: ErrorCounts) -> Tuple[np.ndarray, np.ndarray]:
    """Probit (P_fa, P_miss) of the curve, thinned to about one point per ``DET_RESOLUTION``."""
    fa_axis, miss_axis = _probit(counts.p_fa), _probit(counts.p_miss)
    cell = np.floor(np.stack([fa_axis, miss_axis]) / DET_RESOLUTION)
    changed = np.flatnonzero((np.diff(cell, axis=1) != 0).any(axis=0)) + 1
    keep = np.unique(np.concatenate([[0], changed, [len(fa_axis) - 1]]))
    return fa_axis[keep], miss_axis[keep]
