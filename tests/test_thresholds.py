"""Thresholds chosen from the data: each against a direct computation or planted data whose
right answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from speechbrain_dino.errors import DataError
from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig
from speechbrain_dino.pseudo_labels.labelling import pseudo_label
from speechbrain_dino.pseudo_labels.thresholds import (
    random_pair_cosines,
    typical_size_floor,
    within_cluster_share,
)


def planted(sizes, dim=64, noise=0.11, seed=0):
    """Embeddings around random unit speaker centres, ``sizes[s]`` utterances for speaker s."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    speaker = np.repeat(np.arange(len(sizes)), sizes)
    return (centres[speaker] + noise * rng.standard_normal((len(speaker), dim))).astype(np.float32), speaker


def test_within_cluster_share_is_the_share_of_distinct_pairs_inside_clusters():
    labels = np.array([0, 0, 0, 1, 2, 2])
    brute = np.mean([labels[i] == labels[j] for i in range(6) for j in range(6) if i != j])
    assert within_cluster_share(labels) == pytest.approx(brute)
    assert within_cluster_share(np.arange(5)) == 0.0


def test_random_pair_cosines_are_all_pairs_or_a_sample_of_distinct_ones():
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((30, 8))
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    brute = sorted(float(unit[i] @ unit[j]) for i in range(30) for j in range(i + 1, 30))
    np.testing.assert_allclose(sorted(random_pair_cosines(centroids, seed=0)), brute, atol=1e-5)
    sample = random_pair_cosines(centroids, seed=0, max_pairs=100)
    assert len(sample) == 100 and sample.max() < 1 - 1e-4  # never a centroid with itself
    assert abs(np.mean(sample) - np.mean(brute)) < 0.1


def test_typical_size_floor_is_half_the_cluster_of_a_typical_utterance():
    labels = np.repeat(np.arange(13), [10] * 8 + [1] * 5)  # 8 speakers of 10 and 5 stray fragments
    assert typical_size_floor(labels) == 5
    assert typical_size_floor(np.arange(7)) == 2  # never below 2


@pytest.mark.parametrize("noise", [0.11, 0.2])
def test_auto_threshold_finds_the_speakers_where_a_fixed_one_fits_one_embedding_only(noise):
    # unequal speakers (6 to 24 utterances); at noise 0.2 same-speaker centroid cosines are lower,
    # and the fixed 0.5 that suits the cleaner embedding splits speakers
    sizes = [6, 8, 10, 12, 16, 20, 24] * 5
    x, speaker = planted(sizes, noise=noise)
    auto = pseudo_label(x, PseudoLabelConfig(ahc_threshold="auto", min_size=1, max_size=None), seed=0)
    fixed = pseudo_label(x, PseudoLabelConfig(ahc_threshold=0.5, min_size=1, max_size=None), seed=0)
    auto_nmi = normalized_mutual_info_score(speaker, auto.labels)
    assert auto_nmi > 0.85
    chosen = auto.report["chosen_settings"]["ahc_threshold"]
    if noise == 0.11:  # separable: the speakers are found exactly
        assert auto.report["clusters_after_filtering"] == len(sizes) and auto_nmi > 0.99
    else:
        assert chosen["value"] < 0.5
        assert normalized_mutual_info_score(speaker, fixed.labels) < auto_nmi - 0.05
        assert fixed.report["clusters_after_filtering"] > 2 * len(sizes)  # speakers split


def test_auto_minimum_size_drops_small_clusters_and_reports_its_choice():
    sizes = [12] * 20 + [2] * 6  # 20 speakers of 12 utterances, 6 of only 2
    x, speaker = planted(sizes)
    result = pseudo_label(x, PseudoLabelConfig(ahc_threshold=0.5, min_size="auto", member_quantile=0.0,
                                               max_size=None), seed=0)
    assert result.report["chosen_settings"]["min_size"]["value"] == 6
    kept = result.labels[result.labels >= 0]
    assert np.bincount(kept).min() >= 6
    assert (result.labels[speaker < 20] >= 0).all()
    # the 2-utterance speakers: alone, their clusters are too small (k-means may lump a few in)
    assert (result.labels[speaker >= 20] == -1).sum() >= 8
    assert result.report["config"]["min_size"] == "auto"


@pytest.mark.parametrize("changes, message", [
    ({"ahc_threshold": "automatic"}, "ahc_threshold"),
    ({"ahc_threshold": 1.5}, "ahc_threshold"),
    ({"min_size": "half"}, "min_size"),
    ({"min_size": 0}, "min_size"),
])
def test_bad_automatic_settings_are_named(changes, message):
    with pytest.raises(DataError, match=message):
        PseudoLabelConfig(**changes).validate()


def test_the_labels_never_depend_on_the_true_speakers():
    # the true labels only feed the report's metrics: shuffled, wrong or absent, the clusters and
    # every automatic choice are the same
    x, speaker = planted([6, 8, 10, 12, 16, 20, 24] * 3)
    config = PseudoLabelConfig(ahc_threshold="auto", min_size="auto")
    results = [pseudo_label(x, config, seed=0, true_labels=labels)
               for labels in (None, speaker, np.random.default_rng(0).permutation(speaker), np.zeros_like(speaker))]
    for result in results[1:]:
        np.testing.assert_array_equal(result.labels, results[0].labels)
        assert result.report["chosen_settings"] == results[0].report["chosen_settings"]
