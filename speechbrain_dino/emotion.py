"""Emotion recognition from frozen utterance embeddings: probes, protocol and metrics.

For each speaker-independent fold (:mod:`speechbrain_dino.folds`) a probe
(standardisation fitted on the training part → logistic regression or a small MLP) is trained
on the training part and scored on the test part. Hyperparameters are chosen on the training part
only: by an inner cross-validation grouped by speaker, or on the fold's official validation set
(MSP-Podcast ``Development``) when it has one. The test part is used for nothing but scoring.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.folds import Fold

logger = logging.getLogger(__name__)

CLASSIFIERS = ("logreg", "mlp")
#: Hyperparameter grids searched by the inner cross-validation (keys of the probe's step).
DEFAULT_GRIDS: Dict[str, Dict[str, Sequence[Any]]] = {
    "logreg": {"C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]},
    "mlp": {"weight_decay": [1e-4, 1e-2], "hidden_size": [128, 512]},
}
METRICS = ("micro_f1", "macro_f1", "ua", "majority_rate")

Splits = List[Tuple[np.ndarray, np.ndarray]]


class MLPProbe(ClassifierMixin, BaseEstimator):
    """One-hidden-layer MLP classifier in torch, scikit-learn compatible, deterministic per seed.

    Linear → ReLU → dropout → linear, trained with Adam on cross-entropy in minibatches on the
    CPU; training stops when the loss on a validation split
    (``validation_fraction`` of the speakers in ``groups``) has not improved for ``patience``
    epochs, and the best epoch's weights are kept.
    """

    def __init__(
        self,
        hidden_size: int = 256,
        dropout: float = 0.3,
        weight_decay: float = 1e-3,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        max_epochs: int = 200,
        patience: int = 10,
        validation_fraction: float = 0.15,
        seed: int = 0,
    ) -> None:
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed

    def fit(self, features: np.ndarray, labels: np.ndarray, groups: Optional[np.ndarray] = None):
        """Trains on ``features`` [N, D] and ``labels`` [N].

        ``groups`` [N] (speaker codes) keeps each speaker on one side of the early-stopping
        split; without it the split is by utterance.
        """
        self.classes_, targets = np.unique(labels, return_inverse=True)
        inputs = torch.as_tensor(features, dtype=torch.float32)
        targets = torch.as_tensor(targets)
        if groups is None or len(np.unique(groups)) < 2:
            groups = np.arange(len(labels))
        splitter = GroupShuffleSplit(
            n_splits=1, test_size=self.validation_fraction, random_state=self.seed
        )
        train, valid = next(splitter.split(features, groups=groups))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = torch.nn.Sequential(
                torch.nn.Linear(inputs.shape[1], self.hidden_size),
                torch.nn.ReLU(),
                torch.nn.Dropout(self.dropout),
                torch.nn.Linear(self.hidden_size, len(self.classes_)),
            )
            self.n_epochs_ = self._train(
                network, inputs, targets, torch.as_tensor(train), torch.as_tensor(valid)
            )
        self.network_ = network.eval()
        return self

    def _train(
        self,
        network: torch.nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        train: torch.Tensor,
        valid: torch.Tensor,
    ) -> int:
        """Adam epochs with early stopping; loads the best weights; returns the epochs run."""
        optimizer = torch.optim.Adam(
            network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        best_loss, best_state, epochs_since_best = float("inf"), None, 0
        for epoch in range(1, self.max_epochs + 1):
            network.train()
            for batch in train[torch.randperm(len(train))].split(self.batch_size):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(network(inputs[batch]), targets[batch]).backward()
                optimizer.step()
            network.eval()
            with torch.no_grad():
                valid_loss = torch.nn.functional.cross_entropy(
                    network(inputs[valid]), targets[valid]
                ).item()
            if valid_loss < best_loss:
                best_loss, epochs_since_best = valid_loss, 0
                best_state = {name: value.clone() for name, value in network.state_dict().items()}
            else:
                epochs_since_best += 1
                if epochs_since_best >= self.patience:
                    break
        network.load_state_dict(best_state)
        return epoch

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """[N, K] class probabilities, columns in the order of ``classes_``."""
        with torch.no_grad():
            logits = self.network_(torch.as_tensor(features, dtype=torch.float32))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, features: np.ndarray) -> np.ndarray:
        """[N] predicted labels."""
        return self.classes_[self.predict_proba(features).argmax(axis=1)]


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
    """Per-fold scores of one probe, with their mean and (population) standard deviation."""

    classifier: str
    protocol: str
    label_names: List[str]
    folds: List[FoldResult]

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
        return (
            f"{self.classifier} on {self.protocol} ({len(self.folds)} folds): {scores}% "
            f"(majority class {self.mean('majority_rate'):.2f}%)"
        )

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict: ``micro_f1`` (mean percent, the paper's metric), ``macro_f1``,
        ``ua``, ``majority_rate`` and their ``*_std``, ``folds`` (per-fold dicts), ``confusion``
        (``labels`` and summed ``matrix``), ``classifier``, ``protocol``, ``n_folds``."""
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
        From :func:`speechbrain_dino.folds.speaker_independent_folds` on the same rows.
    speakers : sequence of str, optional
        [N] ``spk_id`` per row (empty = unknown, treated as a speaker of its own) for grouping
        the inner cross-validation and the MLP's early-stopping split. Required unless every
        fold has a ``valid_index``.
    classifier : str
        ``"logreg"`` (multinomial logistic regression) or ``"mlp"`` (:class:`MLPProbe`).
    seed : int
        Seeds the inner splits and the MLP; results are identical for the same seed.
    inner_folds : int
        Folds of the inner, speaker-grouped cross-validation.
    param_grid : dict, optional
        Replaces :data:`DEFAULT_GRIDS` ``[classifier]`` (same keys).
    mlp_options : dict, optional
        Fixed :class:`MLPProbe` arguments (e.g. ``{"max_epochs": 50}``).

    Returns
    -------
    EmotionResults
        Micro-F1 (= accuracy for single-label multiclass), macro-F1, unweighted accuracy and
        majority-class rate per fold, in percent, with the confusion matrices.
    """
    features, labels, label_names = _checked_inputs(embeddings, labels, folds)
    groups = _speaker_groups(speakers, len(labels))
    if speakers is None and any(fold.valid_index is None for fold in folds):
        raise DataError(
            "pass speakers= (the spk_id of every row): hyperparameters are chosen by a "
            "speaker-grouped cross-validation inside each training fold"
        )
    probe, grid = _probe(classifier, seed, param_grid, mlp_options)
    results = []
    with _single_threaded():
        for fold in folds:
            pool, splits = _selection_splits(fold, groups, inner_folds, seed)
            selection_params = _fit_params(classifier, groups[pool])
            chosen = _select_hyperparameters(
                probe, grid, features[pool], labels[pool], splits, selection_params
            )
            model = clone(probe).set_params(**chosen)
            train, test = fold.train_index, fold.test_index
            model.fit(features[train], labels[train], **_fit_params(classifier, groups[train]))
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
    return EmotionResults(classifier, folds[0].protocol, label_names, results)


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


def plot_confusion(results: EmotionResults, path: PathLike) -> Optional[str]:
    """Writes the summed confusion matrix as a PNG: colours row-normalised (recall), cells
    annotated with counts. Returns the path, or ``None`` (with a logged note) without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed; no confusion-matrix plot written")
        return None
    counts = results.confusion
    recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = results.label_names
    size = 1.5 + 0.7 * len(names)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if recall[row, column] > 0.5 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    axes.set(
        xticks=range(len(names)),
        yticks=range(len(names)),
        xlabel="predicted",
        ylabel="true",
        title=f"{results.classifier}, micro-F1 {results.mean('micro_f1'):.1f}%",
    )
    axes.set_xticklabels(names, rotation=45, ha="right")
    axes.set_yticklabels(names)
    figure.colorbar(image, ax=axes, label="recall")
    figure.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Runs BLAS, OpenMP and torch on one thread: probes this small gain nothing from threads
    and lose much to contention on shared cores."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(torch_threads)


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


def _probe(
    classifier: str,
    seed: int,
    param_grid: Optional[Dict[str, Sequence[Any]]],
    mlp_options: Optional[Dict[str, Any]],
) -> Tuple[Pipeline, Dict[str, List[Any]]]:
    """The StandardScaler → classifier pipeline and its grid (keys prefixed ``probe__``)."""
    if classifier == "logreg":
        model = LogisticRegression(max_iter=2000)
    elif classifier == "mlp":
        model = MLPProbe(seed=seed, **(mlp_options or {}))
    else:
        raise DataError(f"unknown classifier {classifier!r}; expected one of {CLASSIFIERS}")
    grid = DEFAULT_GRIDS[classifier] if param_grid is None else param_grid
    pipeline = Pipeline([("scale", StandardScaler()), ("probe", model)])
    return pipeline, {f"probe__{key}": list(values) for key, values in grid.items()}


def _fit_params(classifier: str, groups: np.ndarray) -> Dict[str, np.ndarray]:
    """Extra fit arguments for rows with speaker codes ``groups`` [n]: the MLP's early-stopping
    split keeps speakers apart."""
    return {"probe__groups": groups} if classifier == "mlp" else {}


def _selection_splits(
    fold: Fold, groups: np.ndarray, inner_folds: int, seed: int
) -> Tuple[np.ndarray, Splits]:
    """The rows hyperparameter selection may see (``pool``, global indices) and its
    (fit, score) pairs as positions in ``pool``: the fold's train + valid parts, or an inner
    speaker-grouped K-fold over the train part. Never any test row."""
    if fold.valid_index is not None:
        pool, n_train = fold.fit_index, len(fold.train_index)
        return pool, [(np.arange(n_train), np.arange(n_train, len(pool)))]
    pool = fold.train_index
    n_speakers = len(np.unique(groups[pool]))
    if n_speakers < inner_folds:
        raise DataError(
            f"fold {fold.name!r} trains on {n_speakers} speaker(s), fewer than the "
            f"{inner_folds} inner folds for hyperparameter selection; lower inner_folds"
        )
    splitter = GroupKFold(inner_folds, shuffle=True, random_state=seed)
    return pool, list(splitter.split(pool, groups=groups[pool]))


def _select_hyperparameters(
    probe: Pipeline,
    grid: Dict[str, Sequence[Any]],
    features: np.ndarray,
    labels: np.ndarray,
    splits: Splits,
    fit_params: Dict[str, np.ndarray],
) -> Dict[str, Any]:
    """Grid point with the best mean micro-F1 (accuracy) over ``splits`` of ``features``
    [n_pool, D] / ``labels`` [n_pool]."""
    search = GridSearchCV(probe, grid, scoring="accuracy", cv=splits, refit=False)
    search.fit(features, labels, **fit_params)
    return search.best_params_
