"""Probes on frozen embeddings: a logistic regression or a small torch MLP behind a
StandardScaler, and the choice of their hyperparameters on the training part of a fold only
(a speaker-grouped inner cross-validation, or the fold's official validation set).

Shapes: ``N`` rows (utterances), ``D`` embedding dimensions, ``K`` emotion classes.
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from speechbrain_dino.emotion.folds import Fold
from speechbrain_dino.errors import DataError

CLASSIFIERS = ("logreg", "mlp")
#: Hyperparameter grids searched by the inner cross-validation (keys of the probe's step).
DEFAULT_GRIDS: Dict[str, Dict[str, Sequence[Any]]] = {
    "logreg": {"C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]},
    "mlp": {"weight_decay": [1e-4, 1e-2], "hidden_size": [128, 512]},
}

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


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Runs BLAS, OpenMP and torch on one thread: probes this small gain nothing from threads
    and lose much to contention on shared cores."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(torch_threads)


def build_probe(
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


def fit_params(classifier: str, groups: np.ndarray) -> Dict[str, np.ndarray]:
    """Extra fit arguments for rows with speaker codes ``groups`` [n]: the MLP's early-stopping
    split keeps speakers apart."""
    return {"probe__groups": groups} if classifier == "mlp" else {}


def selection_splits(
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
            f"{inner_folds} inner folds for hyperparameter selection; lower --inner_folds (at least 2)"
        )
    splitter = GroupKFold(inner_folds, shuffle=True, random_state=seed)
    return pool, list(splitter.split(pool, groups=groups[pool]))


def select_hyperparameters(
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
