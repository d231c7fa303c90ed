"""Scoring (cosine, S-norm / AS-norm), metrics against scikit-learn and SpeechBrain, DET plot."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve
from speechbrain.utils.metric_stats import EER, minDCF

from speechbrain_dino.verification.metrics import plot_det, verification_metrics
from speechbrain_dino.verification.scoring import as_norm, cosine_scores, speaker_means


def random_trials(seed, n_target, n_nontarget, decimals=None):
    """Gaussian target / non-target scores, shuffled; rounded (so with ties) when asked."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(1.5, 1.0, n_target), rng.normal(0.0, 1.2, n_nontarget)])
    labels = np.concatenate([np.ones(n_target, np.int8), np.zeros(n_nontarget, np.int8)])
    order = rng.permutation(len(scores))
    scores = scores[order] if decimals is None else np.round(scores[order], decimals)
    return scores, labels[order]


def sklearn_reference(scores, labels, p_target):
    """EER (percent) and normalised minDCF from scikit-learn's ROC.

    EER: the ROC point with the smallest |P_fa - P_miss| (the lowest threshold on ties), reported
    as their mean; minDCF: min over thresholds of P_miss * p + P_fa * (1 - p), over min(p, 1 - p).
    """
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1 - tpr
    gap = np.abs(fpr - fnr)
    best = np.flatnonzero(gap <= gap.min() + 1e-12)[-1]
    eer = 100 * (fpr[best] + fnr[best]) / 2
    dcf = np.min(fnr * p_target + fpr * (1 - p_target)) / min(p_target, 1 - p_target)
    return eer, dcf


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "n_target, n_nontarget, decimals",
    [(800, 8000, None), (3000, 3000, None), (4000, 400, None), (1000, 5000, 1)],
)
def test_metrics_agree_with_sklearn_roc(seed, n_target, n_nontarget, decimals):
    scores, labels = random_trials(seed, n_target, n_nontarget, decimals)
    metrics = verification_metrics(scores, labels)
    assert metrics["n_trials"] == n_target + n_nontarget and metrics["n_target"] == n_target
    for p_target in (0.01, 0.05):
        eer, dcf = sklearn_reference(scores, labels, p_target)
        assert metrics["EER"] == pytest.approx(eer, abs=0.01)
        assert metrics[f"minDCF_{p_target}"] == pytest.approx(dcf, abs=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_agree_with_speechbrain(seed):
    scores, labels = random_trials(seed, 150, 450, decimals=2 if seed else None)
    positive = torch.tensor(scores[labels == 1], dtype=torch.float64)
    negative = torch.tensor(scores[labels == 0], dtype=torch.float64)
    metrics = verification_metrics(scores, labels)
    assert metrics["EER"] == pytest.approx(100 * EER(positive, negative)[0], abs=1e-6)
    for p_target in (0.01, 0.05):
        expected = minDCF(positive, negative, p_target=p_target)[0] / p_target
        assert metrics[f"minDCF_{p_target}"] == pytest.approx(expected, abs=1e-6)


def test_metrics_need_both_classes():
    with pytest.raises(ValueError, match="0 non-target"):
        verification_metrics(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="0 target"):
        verification_metrics(np.array([0.1, 0.2]), np.array([0, 0]))


def unit(vector):
    return vector / np.linalg.norm(vector)


def test_cosine_scores_equal_naive_loop():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(5, 7)).astype(np.float32)
    enrol, test = np.array([0, 1, 4, 2]), np.array([3, 1, 0, 2])
    expected = [unit(embeddings[e]) @ unit(embeddings[t]) for e, t in zip(enrol, test)]
    np.testing.assert_allclose(cosine_scores(embeddings, enrol, test), expected, rtol=1e-5)


@pytest.mark.parametrize("top_n", [None, 3])
def test_as_norm_equals_naive_per_trial_formula(top_n):
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(6, 4))
    cohort = rng.normal(size=(5, 4))
    enrol, test = np.array([0, 0, 5, 3]), np.array([1, 2, 0, 4])
    raw = cosine_scores(embeddings, enrol, test)
    expected = []
    for score, e, t in zip(raw, enrol, test):
        z = []
        for side in (e, t):
            cohort_scores = sorted((unit(embeddings[side]) @ unit(c) for c in cohort), reverse=True)
            kept = np.array(cohort_scores[: top_n or len(cohort)])
            z.append((score - kept.mean()) / kept.std())
        expected.append(np.mean(z))
    normalised = as_norm(raw, embeddings, enrol, test, cohort, top_n=top_n)
    np.testing.assert_allclose(normalised, expected, rtol=1e-4, atol=1e-5)


def test_speaker_means_average_unit_embeddings_and_skip_unlabelled():
    embeddings = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0], [5.0, 5.0]])
    cohort, speakers = speaker_means(embeddings, ["b", "a", "b", ""])
    assert speakers == ["a", "b"]
    np.testing.assert_allclose(cohort, [[0.0, 1.0], [0.5, 0.5]])
    with pytest.raises(ValueError):
        speaker_means(embeddings, ["", "", "", ""])


def hub_speaker_embeddings(rng, speakers, utterances, hub, dim):
    """Utterances around speaker centres; each centre leans on a shared ``hub`` direction by a
    speaker-dependent amount, so some speakers score high against everyone."""
    directions = rng.normal(size=(speakers, dim)) / np.sqrt(dim)
    lean = rng.uniform(0.0, 3.0, size=(speakers, 1))
    centres = directions + lean * hub
    noise = rng.normal(size=(speakers, utterances, dim)) / np.sqrt(dim)
    embeddings = (centres[:, None, :] + noise).reshape(-1, dim)
    return embeddings.astype(np.float32), np.repeat(np.arange(speakers), utterances)


def test_as_norm_removes_speaker_dependent_offsets():
    rng = np.random.default_rng(0)
    dim = 64
    hub = unit(rng.normal(size=dim))
    test_emb, test_spk = hub_speaker_embeddings(rng, 30, 6, hub, dim)
    train_emb, train_spk = hub_speaker_embeddings(rng, 200, 4, hub, dim)
    cohort, _ = speaker_means(train_emb, [f"train{s}" for s in train_spk])
    enrol, test = np.triu_indices(len(test_emb), k=1)
    labels = (test_spk[enrol] == test_spk[test]).astype(np.int8)
    raw = cosine_scores(test_emb, enrol, test)
    normalised = as_norm(raw, test_emb, enrol, test, cohort, top_n=50)
    raw_eer = verification_metrics(raw, labels)["EER"]
    normalised_eer = verification_metrics(normalised, labels)["EER"]
    assert normalised_eer < 0.5 * raw_eer and raw_eer - normalised_eer > 5.0


def test_det_plot_written(tmp_path):
    pytest.importorskip("matplotlib")
    systems = {
        "good": random_trials(0, 500, 5000),
        "worse": random_trials(1, 300, 3000, decimals=1),
    }
    path = os.path.join(tmp_path, "plots", "det.png")
    assert plot_det(systems, path, title="test DET") == path
    with open(path, "rb") as fin:
        assert fin.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000


def test_det_plot_without_matplotlib(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    path = os.path.join(tmp_path, "det.png")
    assert plot_det({"x": random_trials(0, 10, 10)}, path) is None
    assert not os.path.exists(path) and "matplotlib" in caplog.text
