"""Emotion recognition from frozen utterance embeddings: probes, protocol and metrics.

For each speaker-independent fold (:mod:`speechbrain_dino.emotion.folds`) a probe
(standardisation fitted on the training part → logistic regression or a small MLP) is trained
on the training part and scored on the test part. Hyperparameters are chosen on the training part
only: by an inner cross-validation grouped by speaker, or on the fold's official validation set
(MSP-Podcast ``Development``) when it has one. The test part is used for nothing but scoring.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from speechbrain_dino.emotion import probes
from speechbrain_dino.emotion.folds import Fold
from speechbrain_dino.errors import DataError

logger = logging.getLogger(__name__)

METRICS = ("micro_f1", "macro_f1", "ua", "majority_rate")


@dataclass
class FoldResult:
    """Scores of one fold; rates in percent.

    ``micro_f1`` equals the accuracy (single-label multiclass), ``ua`` is the unweighted
    accuracy (mean per-class recall over the classes in the test part), ``majority_rate`` the
    share of the test part's most frequent class (the score of always guessing it).
    ``confusion`` [K, K] counts rows = true, columns = predicted, labels sorted.
    """

    name: str
    micro_f1: float
    macro_f1: float
    ua: float
    majority_rate: float
    confusion: np.ndarray
    n_train: int
    n_test: int
    hyperparameters: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready copy (confusion as nested lists)."""
        out = dict(vars(self))
        out["confusion"] = self.confusion.tolist()
        return out


@dataclass
class EmotionResults:
    """Per-fold scores of one probe, with their mean and (population) standard deviation.

    ``skipped_folds`` names the folds left out because their test part holds a single emotion
    (any probe scores 100% or 0% there, which says nothing about the embedding).
    """

    classifier: str
    protocol: str
    label_names: List[str]
    folds: List[FoldResult]
    skipped_folds: List[str] = field(default_factory=list)

    def mean(self, metric: str) -> float:
        """Mean over folds of ``metric`` (one of :data:`METRICS`)."""
        return float(np.mean([getattr(fold, metric) for fold in self.folds]))

    def std(self, metric: str) -> float:
        """Standard deviation over folds (ddof=0, so 0 for a single fold)."""
        return float(np.std([getattr(fold, metric) for fold in self.folds]))

    @property
    def confusion(self) -> np.ndarray:
        """[K, K] confusion counts summed over folds (rows true, columns predicted)."""
        return np.sum([fold.confusion for fold in self.folds], axis=0)

    def summary(self) -> str:
        """One line: micro-F1, macro-F1 and UA as mean ± std, majority rate, fold count."""
        scores = ", ".join(
            f"{metric} {self.mean(metric):.2f} ± {self.std(metric):.2f}"
            for metric in ("micro_f1", "macro_f1", "ua")
        )
        skipped = f", {len(self.skipped_folds)} skipped (one emotion)" if self.skipped_folds else ""
        return (
            f"{self.classifier} on {self.protocol} ({len(self.folds)} folds{skipped}): {scores}% "
            f"(majority class {self.mean('majority_rate'):.2f}%)"
        )

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict: ``micro_f1`` (mean percent, the paper's metric), ``macro_f1``,
        ``ua``, ``majority_rate`` and their ``*_std``, ``folds`` (per-fold dicts), ``confusion``
        (``labels`` and summed ``matrix``), ``classifier``, ``protocol``, ``n_folds`` (scored),
        ``skipped_folds``."""
        out: Dict[str, Any] = {}
        for metric in METRICS:
            out[metric] = self.mean(metric)
            out[metric + "_std"] = self.std(metric)
        out.update(
            folds=[fold.to_dict() for fold in self.folds],
            confusion={"labels": list(self.label_names), "matrix": self.confusion.tolist()},
            classifier=self.classifier,
            protocol=self.protocol,
            n_folds=len(self.folds),
            skipped_folds=list(self.skipped_folds),
        )
        return out


def evaluate_emotion(
    embeddings: np.ndarray,
    labels: Sequence[str],
    folds: Sequence[Fold],
    speakers: Optional[Sequence[str]] = None,
    classifier: str = "logreg",
    seed: int = 0,
    inner_folds: int = 3,
    param_grid: Optional[Dict[str, Sequence[Any]]] = None,
    mlp_options: Optional[Dict[str, Any]] = None,
) -> EmotionResults:
    """Trains and scores a probe on every fold.

    Per fold: hyperparameters (``C`` for ``logreg``; ``weight_decay`` and ``hidden_size`` for
    ``mlp``) are chosen by micro-F1 of a ``inner_folds``-fold cross-validation over the training
    part grouped by speaker, or on ``valid_index`` when the fold has one (then training uses
    ``train_index`` only); the pipeline (StandardScaler → classifier) is then fitted on the
    training part with them and scored on the test part.

    Arguments
    ---------
    embeddings : np.ndarray
        [N, D] one frozen embedding per manifest row.
    labels : sequence of str
        [N] emotion labels; rows outside every fold may be empty.
    folds : sequence of Fold
        From :func:`speechbrain_dino.emotion.folds.speaker_independent_folds` on the same rows.
    speakers : sequence of str, optional
        [N] ``spk_id`` per row (empty = unknown, treated as a speaker of its own) for grouping
        the inner cross-validation and the MLP's early-stopping split. Required unless every
        fold has a ``valid_index``.
    classifier : str
        ``"logreg"`` (multinomial logistic regression) or ``"mlp"``
        (:class:`~speechbrain_dino.emotion.probes.MLPProbe`).
    seed : int
        Seeds the inner splits and the MLP; results are identical for the same seed.
    inner_folds : int
        Folds of the inner, speaker-grouped cross-validation.
    param_grid : dict, optional
        Replaces :data:`~speechbrain_dino.emotion.probes.DEFAULT_GRIDS` ``[classifier]`` (same keys).
    mlp_options : dict, optional
        Fixed :class:`~speechbrain_dino.emotion.probes.MLPProbe` arguments (e.g. ``{"max_epochs": 50}``).

    Returns
    -------
    EmotionResults
        Micro-F1 (= accuracy for single-label multiclass), macro-F1, unweighted accuracy and
        majority-class rate per fold, in percent, with the confusion matrices; a fold whose test
        part holds one emotion is skipped and named in ``skipped_folds`` (logged).
    """
    features, labels, label_names = _checked_inputs(embeddings, labels, folds)
    groups = _speaker_groups(speakers, len(labels))
    if speakers is None and any(fold.valid_index is None for fold in folds):
        raise DataError(
            "pass speakers= (the spk_id of every row): hyperparameters are chosen by a "
            "speaker-grouped cross-validation inside each training fold"
        )
    probe, grid = probes.build_probe(classifier, seed, param_grid, mlp_options)
    results = []
    skipped = [fold.name for fold in folds if len(set(labels[fold.test_index])) < 2]
    for name in skipped:
        logger.warning("fold %s skipped: its test part holds a single emotion (nothing to tell apart)", name)
    if len(skipped) == len(folds):
        raise DataError("every fold's test part holds a single emotion: nothing to evaluate")
    with probes.single_threaded():
        for fold in folds:
            if fold.name in skipped:
                continue
            pool, splits = probes.selection_splits(fold, groups, inner_folds, seed)
            selection_params = probes.fit_params(classifier, groups[pool])
            chosen = probes.select_hyperparameters(
                probe, grid, features[pool], labels[pool], splits, selection_params
            )
            model = clone(probe).set_params(**chosen)
            train, test = fold.train_index, fold.test_index
            model.fit(features[train], labels[train], **probes.fit_params(classifier, groups[train]))
            results.append(
                FoldResult(
                    name=fold.name,
                    n_train=len(train),
                    n_test=len(test),
                    hyperparameters={key.split("__", 1)[1]: value for key, value in chosen.items()},
                    **emotion_metrics(labels[test], model.predict(features[test]), label_names),
                )
            )
            logger.info("fold %s: micro-F1 %.2f%% with %s", fold.name, results[-1].micro_f1, chosen)
    return EmotionResults(classifier, folds[0].protocol, label_names, results, skipped)


def emotion_metrics(
    true_labels: np.ndarray, predicted_labels: np.ndarray, label_names: Sequence[str]
) -> Dict[str, Any]:
    """Scores of one test set, rates in percent.

    Arguments
    ---------
    true_labels, predicted_labels : np.ndarray
        [N] labels.
    label_names : sequence of str
        [K] the order of the confusion matrix's rows and columns.

    Returns
    -------
    dict
        ``micro_f1`` (equal to the accuracy: every utterance has exactly one label),
        ``macro_f1``, ``ua`` (unweighted accuracy = mean recall of the classes in
        ``true_labels``), ``majority_rate`` and ``confusion`` [K, K] counts.
    """
    _, counts = np.unique(true_labels, return_counts=True)
    return {
        "micro_f1": 100.0 * float(f1_score(true_labels, predicted_labels, average="micro")),
        "macro_f1": 100.0
        * float(f1_score(true_labels, predicted_labels, average="macro", zero_division=0)),
        "ua": 100.0 * float(balanced_accuracy_score(true_labels, predicted_labels)),
        "majority_rate": 100.0 * float(counts.max()) / len(true_labels),
        "confusion": confusion_matrix(true_labels, predicted_labels, labels=list(label_names)),
    }


def _checked_inputs(
    embeddings: np.ndarray, labels: Sequence[str], folds: Sequence[Fold]
) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Validates shapes, finiteness, fold indices and labels.

    Returns features [N, D] float64, labels [N] str and the sorted label names [K] of the rows
    in any fold."""
    features = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray([str(label).strip() for label in labels])
    if features.ndim != 2 or len(features) != len(labels):
        raise DataError(
            f"embeddings must be [N, D] with one row per label; got shape {features.shape} "
            f"for {len(labels)} labels"
        )
    if not np.isfinite(features).all():
        raise DataError("embeddings contain NaN or infinite values")
    if not folds:
        raise DataError("no folds to evaluate")
    label_names: set = set()
    for fold in folds:
        used = np.concatenate([fold.fit_index, fold.test_index])
        if used.min() < 0 or used.max() >= len(labels):
            raise DataError(f"fold {fold.name!r} indexes rows outside 0..{len(labels) - 1}")
        if np.any(labels[used] == ""):
            raise DataError(f"fold {fold.name!r} holds rows with an empty emotion label")
        if len(set(labels[fold.train_index])) < 2:
            raise DataError(f"fold {fold.name!r} has fewer than 2 emotions in its training part")
        label_names.update(labels[used])
    return features, labels, sorted(label_names)


def _speaker_groups(speakers: Optional[Sequence[str]], n_rows: int) -> np.ndarray:
    """[N] integer speaker codes; every unknown (empty or absent) speaker gets its own code."""
    names = np.asarray([""] * n_rows if speakers is None else [str(s).strip() for s in speakers])
    if len(names) != n_rows:
        raise DataError(f"got {len(names)} speakers for {n_rows} embeddings")
    codes = np.unique(names, return_inverse=True)[1]
    unknown = names == ""
    codes[unknown] = codes.max() + 1 + np.arange(unknown.sum())
    return codes
