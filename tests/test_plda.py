"""Two-covariance PLDA and the pseudo-labels' PLDA second pass: the closed forms equal brute-force
Gaussian likelihoods, the fit recovers the generating covariances, posteriors single out the
ambiguous members, and the second pass merges speakers a too-strict first pass split."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from speechbrain_dino.errors import DataError
from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig
from speechbrain_dino.pseudo_labels.labelling import pseudo_label
from speechbrain_dino.pseudo_labels.plda import fit_plda, group_llr, member_posteriors


def brute_log_likelihood(y: np.ndarray, psi: np.ndarray) -> float:
    """log p(rows of y are one speaker) with y = s + e, s ~ N(0, diag psi), e ~ N(0, I)."""
    n, dim = y.shape
    covariance = np.kron(np.eye(n), np.eye(dim)) + np.kron(np.ones((n, n)), np.diag(psi))
    return float(multivariate_normal(np.zeros(n * dim), covariance).logpdf(y.ravel()))


def two_covariance_data(rng, speakers: int, per_speaker: int, between: np.ndarray,
                        within: np.ndarray):
    """Rows [S*U, D] drawn from the two-covariance model around mean 0, and their labels."""
    dim = len(between)
    speaker_vars = rng.multivariate_normal(np.zeros(dim), between, speakers)
    labels = np.repeat(np.arange(speakers), per_speaker)
    noise = rng.multivariate_normal(np.zeros(dim), within, len(labels))
    return speaker_vars[labels] + noise, labels


def test_group_llr_equals_the_brute_force_likelihood_ratio():
    rng = np.random.default_rng(0)
    psi = rng.uniform(0.2, 3.0, 3)
    group_a, group_b = rng.standard_normal((3, 3)), rng.standard_normal((2, 3)) + 1.0
    expected = (brute_log_likelihood(np.vstack([group_a, group_b]), psi)
                - brute_log_likelihood(group_a, psi) - brute_log_likelihood(group_b, psi))
    llr = group_llr(psi)(group_a.sum(0), 3, group_b.sum(0), 2)
    assert llr == pytest.approx(expected, rel=1e-9)
    # batched over pairs, as the agglomeration calls it
    batch = group_llr(psi)(np.stack([group_a.sum(0)] * 4), np.full(4, 3.0),
                           np.stack([group_b.sum(0)] * 4), np.full(4, 2.0))
    np.testing.assert_allclose(batch, expected, rtol=1e-9)


def test_fit_recovers_the_generating_covariances():
    rng = np.random.default_rng(1)
    dim = 6
    mixing = rng.standard_normal((dim, dim))
    between = mixing @ mixing.T / dim + 0.2 * np.eye(dim)
    within_root = np.diag(rng.uniform(0.3, 1.0, dim)) @ np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    within = within_root @ within_root.T
    x, labels = two_covariance_data(rng, 2000, 6, between, within)
    model = fit_plda(x + 5.0, labels)
    np.testing.assert_allclose(model.mean, 5.0, atol=0.1)
    # V^T W V = I and V^T B V = diag(psi), for the TRUE covariances, up to estimation noise
    np.testing.assert_allclose(model.transform.T @ within @ model.transform, np.eye(dim), atol=0.08)
    expected_psi = np.sort(np.linalg.eigvals(np.linalg.solve(within, between)).real)[::-1]
    np.testing.assert_allclose(model.psi, expected_psi, rtol=0.15)


def test_posteriors_single_out_members_between_two_speakers():
    rng = np.random.default_rng(2)

    def speaker_rows(centre, count):  # member mean exactly at the centre
        noise = 0.5 * rng.standard_normal((count, 2))
        return noise - noise.mean(0) + centre

    # row 0 sits halfway; without it, both speakers have 19 members centred at (+-3, 0)
    y = np.vstack([[[0.0, 0.0]], speaker_rows([3.0, 0.0], 19), speaker_rows([-3.0, 0.0], 19)])
    labels = np.repeat([0, 0, 1], [1, 19, 19])
    psi = np.array([9.0, 1e-3])
    posterior = member_posteriors(y, labels, psi, candidates=2, backend="sklearn")
    assert posterior[0] == pytest.approx(0.5, abs=1e-6)
    assert np.all(posterior[1:] > 0.95)
    # a clear member of speaker 0 put into speaker 1's cluster gets a posterior near 0
    mislabelled = labels.copy()
    mislabelled[1] = 1
    assert member_posteriors(y, mislabelled, psi, candidates=2, backend="sklearn")[1] < 0.01


def anisotropic_speakers(seed: int = 0, speakers: int = 30, per_speaker: int = 30, dim: int = 24):
    """Speakers whose utterances vary mostly along 3 shared nuisance directions ("channels").

    Cosine similarity treats the nuisance as speaker difference, so a cosine threshold that
    keeps distinct speakers apart splits each speaker by channel; PLDA learns the directions.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((speakers, dim))
    nuisance = np.linalg.qr(rng.standard_normal((dim, 3)))[0].T  # [3, dim]
    labels = np.repeat(np.arange(speakers), per_speaker)
    channel = rng.standard_normal((len(labels), 3)) * 2.0
    x = centres[labels] + channel @ nuisance + 0.3 * rng.standard_normal((len(labels), dim))
    return x.astype(np.float32), labels


def test_second_pass_merges_speakers_a_strict_first_pass_split():
    x, speaker = anisotropic_speakers()
    common = dict(ahc_threshold=0.7, min_size=1, max_size=None, pca_variance=None)
    cosine_only = pseudo_label(x, PseudoLabelConfig(**common), seed=0, true_labels=speaker)
    second = pseudo_label(x, PseudoLabelConfig(plda_second_pass=True, **common), seed=0,
                          true_labels=speaker)
    first_pass = cosine_only.report["clusters_before_filtering"]
    assert first_pass > 60  # 30 speakers split by channel
    assert second.report["clusters_after_first_pass"] == first_pass
    assert second.report["clusters_before_filtering"] <= 40
    before, after = (result.report["metrics"]["before_filtering"] for result in (cosine_only, second))
    assert before["nmi"] < 0.92 and after["nmi"] > 0.96
    assert after["purity"] > before["purity"] - 0.01  # merged the splits, not distinct speakers
    assert "plda" in second.report["seconds"]


def test_second_pass_needs_clusters_to_learn_from():
    x = np.random.default_rng(3).standard_normal((20, 8)).astype(np.float32)
    config = PseudoLabelConfig(ahc_threshold=1.0, kmeans_ratio=1.0, refine="none",
                               plda_second_pass=True, min_size=1)
    with pytest.raises(DataError, match="PLDA needs at least 2 clusters"):
        pseudo_label(x, config)
