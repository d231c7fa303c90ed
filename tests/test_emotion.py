"""Emotion probes on synthetic embeddings: they learn, they do not leak, metrics are right."""
from __future__ import annotations

import json
import sys
from typing import Dict, List, Tuple

import numpy as np
import pytest

from speechbrain_dino.emotion import probes
from speechbrain_dino.emotion.evaluation import emotion_metrics, evaluate_emotion
from speechbrain_dino.emotion.folds import Fold, speaker_independent_folds
from speechbrain_dino.emotion.outputs import plot_confusion
from speechbrain_dino.errors import DataError

#: A small, fast MLP configuration for the tests.
FAST_MLP = dict(param_grid={"weight_decay": [1e-4, 1e-2]}, mlp_options={"max_epochs": 60})


def synthetic_set(
    n_speakers: int = 12, per_speaker: int = 30, n_emotions: int = 4, dim: int = 16, seed: int = 0
) -> Tuple[np.ndarray, List[str], List[Dict[str, str]]]:
    """Embeddings [N, dim] = emotion centre + speaker offset + noise, labels [N], manifest rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_emotions, dim))
    embeddings, rows = [], []
    for speaker in range(n_speakers):
        offset = rng.normal(size=dim)
        for turn in range(per_speaker):
            label = rng.integers(n_emotions)
            embeddings.append(0.8 * centres[label] + offset + rng.normal(size=dim))
            rows.append({"ID": f"s{speaker}_{turn}", "spk_id": f"spk{speaker}",
                         "emotion": f"emotion{label}"})
    return np.array(embeddings), [row["emotion"] for row in rows], rows


@pytest.fixture(scope="module")
def dataset():
    embeddings, labels, rows = synthetic_set()
    folds = speaker_independent_folds(rows, n_folds=4)
    return embeddings, labels, [row["spk_id"] for row in rows], folds


@pytest.mark.parametrize("classifier, options", [("logreg", {}), ("mlp", FAST_MLP)])
def test_probe_learns_emotion_structure(dataset, classifier, options):
    embeddings, labels, speakers, folds = dataset
    results = evaluate_emotion(embeddings, labels, folds, speakers, classifier=classifier,
                               **options)
    assert results.mean("micro_f1") > results.mean("majority_rate") + 30, results.summary()
    assert results.mean("ua") > 100 / 4 + 30
    assert results.confusion.sum() == len(labels)  # every row is tested exactly once


@pytest.mark.parametrize("classifier, options", [("logreg", {}), ("mlp", FAST_MLP)])
def test_shuffled_labels_score_at_chance(dataset, classifier, options):
    embeddings, labels, speakers, folds = dataset
    shuffled = list(np.random.default_rng(1).permutation(labels))
    results = evaluate_emotion(embeddings, shuffled, folds, speakers, classifier=classifier,
                               **options)
    # 360 test predictions: chance is about 25-30% with a standard error of about 2.4 points.
    assert results.mean("micro_f1") < results.mean("majority_rate") + 7, results.summary()
    assert abs(results.mean("ua") - 100 / 4) < 8, results.summary()


@pytest.mark.parametrize("classifier, options", [("logreg", {}), ("mlp", FAST_MLP)])
def test_hyperparameter_selection_never_sees_the_test_fold(dataset, monkeypatch, classifier,
                                                           options):
    embeddings, labels, speakers, folds = dataset
    row_of = {embedding.tobytes(): index for index, embedding in enumerate(embeddings)}
    seen: List[set] = []
    select = probes.select_hyperparameters

    def spy(probe, grid, features, *args):
        seen.append({row_of[np.asarray(row).tobytes()] for row in features})
        return select(probe, grid, features, *args)

    monkeypatch.setattr(probes, "select_hyperparameters", spy)
    evaluate_emotion(embeddings, labels, folds, speakers, classifier=classifier, **options)
    assert len(seen) == len(folds)
    for rows_seen, fold in zip(seen, folds):
        assert rows_seen == set(fold.train_index.tolist())


def test_official_validation_set_is_used_for_selection_with_unknown_speakers(dataset,
                                                                             monkeypatch):
    embeddings, labels, speakers, _ = dataset
    order = np.random.default_rng(2).permutation(len(labels))
    fold = Fold("Test1", order[:200], order[300:], order[200:300], protocol="msp_podcast")
    splits_seen = []
    selection_splits = probes.selection_splits

    def spy(*args):
        pool, splits = selection_splits(*args)
        splits_seen.append((pool, splits))
        return pool, splits

    monkeypatch.setattr(probes, "selection_splits", spy)
    unknown = ["" if index % 3 else speaker for index, speaker in enumerate(speakers)]
    for classifier, options in (("logreg", {}), ("mlp", FAST_MLP)):
        results = evaluate_emotion(embeddings, labels, [fold], unknown, classifier=classifier,
                                   **options)
        assert results.protocol == "msp_podcast" and results.std("micro_f1") == 0.0
        assert results.mean("micro_f1") > results.mean("majority_rate") + 20
    pool, ((fit, score),) = splits_seen[0]
    np.testing.assert_array_equal(pool[fit], fold.train_index)
    np.testing.assert_array_equal(pool[score], fold.valid_index)


def test_metrics_match_a_hand_computation():
    true = np.array(["a", "a", "a", "b", "b", "c"])
    predicted = np.array(["a", "a", "b", "b", "c", "c"])
    metrics = emotion_metrics(true, predicted, ["a", "b", "c"])
    assert metrics["micro_f1"] == pytest.approx(100 * 4 / 6)  # = accuracy
    assert metrics["ua"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1) / 3)  # mean recall
    assert metrics["macro_f1"] == pytest.approx(100 * (0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["majority_rate"] == pytest.approx(50.0)
    np.testing.assert_array_equal(metrics["confusion"], [[2, 1, 0], [0, 1, 1], [0, 0, 1]])


@pytest.mark.parametrize("classifier, options", [("logreg", {}), ("mlp", FAST_MLP)])
def test_results_are_deterministic_per_seed_and_json_ready(classifier, options):
    embeddings, labels, rows = synthetic_set(n_speakers=6, per_speaker=20)
    folds = speaker_independent_folds(rows, n_folds=3)
    speakers = [row["spk_id"] for row in rows]

    def run() -> dict:
        return evaluate_emotion(embeddings, labels, folds, speakers, classifier=classifier,
                                seed=5, **options).to_dict()

    first = run()
    assert json.loads(json.dumps(first)) == run()
    assert {"micro_f1", "macro_f1", "ua", "folds", "confusion", "classifier",
            "protocol"} <= set(first)
    assert first["micro_f1"] == pytest.approx(np.mean([f["micro_f1"] for f in first["folds"]]))
    assert first["confusion"]["labels"] == sorted(set(labels))
    assert (first["classifier"], first["protocol"]) == (classifier, "speaker_kfold")


def test_plot_confusion(dataset, tmp_path, monkeypatch):
    embeddings, labels, speakers, folds = dataset
    results = evaluate_emotion(embeddings, labels, folds, speakers, param_grid={"C": [1.0]})
    path = plot_confusion(results, tmp_path / "plots" / "confusion.png")
    with open(path, "rb") as fin:
        assert fin.read(8) == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert plot_confusion(results, tmp_path / "none.png") is None


def test_bad_inputs_are_clear_errors(dataset):
    embeddings, labels, speakers, folds = dataset
    with pytest.raises(DataError, match="pass speakers="):
        evaluate_emotion(embeddings, labels, folds)
    with pytest.raises(DataError, match="unknown classifier"):
        evaluate_emotion(embeddings, labels, folds, speakers, classifier="svm")
    with pytest.raises(DataError, match=r"\[N, D\]"):
        evaluate_emotion(embeddings[:-1], labels, folds, speakers)
    broken = embeddings.copy()
    broken[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        evaluate_emotion(broken, labels, folds, speakers)
    with pytest.raises(DataError, match="fewer than the 20 inner folds"):
        evaluate_emotion(embeddings, labels, folds, speakers, inner_folds=20)
