"""The decision threshold estimated from clusters, and the fine-tuning export that records it."""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from speechbrain_dino.data.manifest import write_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.export import Architecture, export_pretrained, recorded_threshold
from speechbrain_dino.inference.threshold_estimate import (
    ESTIMATE_SOURCE,
    ClusterThresholdEstimator,
    cluster_threshold,
    draw_members,
)
from speechbrain_dino.synthetic.corpus import generate_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=32, attention_channels=16,
                   se_channels=16, res2net_scale=4)


def planted(speakers=12, members=6, spread=0.15, seed=0):
    """Embeddings of ``speakers`` random directions plus noise, and their cluster names."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((speakers, 64))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    clusters = np.repeat(np.arange(speakers), members)
    vectors = centres[clusters] + spread * rng.standard_normal((len(clusters), 64)) / 8
    return vectors, [f"c{cluster}" for cluster in clusters]


def test_the_estimate_separates_same_from_different_cluster_pairs():
    vectors, clusters = planted()
    estimate = cluster_threshold(vectors, clusters)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit @ unit.T
    same = np.equal.outer(clusters, clusters) & ~np.eye(len(clusters), dtype=bool)
    different = ~np.equal.outer(clusters, clusters)
    assert cosines[different].max() - 1e-6 <= estimate.value < cosines[same].min()
    assert estimate.eer_percent == 0.0
    assert (estimate.clusters, estimate.utterances) == (12, 72)
    assert estimate.target_trials == 12 * 15 and estimate.nontarget_trials == 72 * 71 // 2 - 12 * 15


def test_overlapping_clusters_put_it_between_the_two_score_distributions():
    vectors, clusters = planted(spread=4.0)
    estimate = cluster_threshold(vectors, clusters)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit @ unit.T
    same = np.equal.outer(clusters, clusters) & ~np.eye(len(clusters), dtype=bool)
    different = ~np.equal.outer(clusters, clusters)
    assert 0 < estimate.eer_percent < 50
    assert np.median(cosines[different]) < estimate.value < np.median(cosines[same])


def test_the_draw_is_bounded_seeded_and_leaves_the_global_random_state_alone():
    clusters = [f"c{index % 300}" for index in range(300 * 12)]
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    first = draw_members(clusters, seed=3)
    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1], np.random.get_state()[1]) and states[2] == random.getstate()
    assert np.array_equal(first, draw_members(clusters, seed=3))
    names, counts = np.unique(np.asarray(clusters)[first], return_counts=True)
    assert len(names) == 200 and counts.max() == 8
    assert not np.array_equal(first, draw_members(clusters, seed=4))


def test_one_cluster_or_only_singletons_give_no_estimate():
    vectors, _ = planted(speakers=4, members=3)
    with pytest.raises(DataError):
        cluster_threshold(vectors, ["one"] * len(vectors))
    with pytest.raises(DataError):
        cluster_threshold(vectors, [str(index) for index in range(len(vectors))])


def test_the_estimator_of_a_fine_tuning_draws_without_touching_the_global_random_state():
    rows = [{"ID": f"u{index}", "duration": "1.0", "wav": f"/nowhere/u{index}.wav", "spk_id": f"s{index % 5}"}
            for index in range(40)]
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    estimator = ClusterThresholdEstimator(rows, seed=1986)
    assert torch.equal(before[0], torch.get_rng_state()) and np.array_equal(before[1], np.random.get_state()[1])
    assert before[2] == random.getstate()
    assert sorted(set(estimator.clusters)) == [f"s{index}" for index in range(5)] and len(estimator.clusters) == 40


def test_a_fine_tuning_without_validation_trials_records_the_estimate(tmp_path):
    rows = generate_corpus(tmp_path / "corpus", speakers=4, utterances=4, emotions=1, seed=5, min_seconds=1.0,
                           max_seconds=1.5)
    write_manifest([dict(row, spk_id=f"pl{row['spk_id']}") for row in rows], tmp_path / "labels.csv")
    architecture = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})
    torch.manual_seed(0)
    init = export_pretrained(tmp_path / "init", architecture.build_encoder().eval(), architecture)
    command = [
        sys.executable, "-m", "speechbrain_dino.recipes.train_aam", "hparams/demo/train_aam.yaml",
        f"--init_from={init}", f"--train_csv={tmp_path / 'labels.csv'}", f"--output_folder={tmp_path / 'aam'}",
        "--number_of_epochs=1", "--batch_size=8", "--crop_seconds=1.0",
        "--augment={noise_prob: 0.0, reverb_prob: 0.0}", "--noprogressbar",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    exported = tmp_path / "aam" / "pretrained"
    threshold = recorded_threshold(exported)
    assert threshold.source == ESTIMATE_SOURCE and -1 <= threshold.value <= 1
    assert threshold.details["clusters"] == 4 and threshold.details["utterances"] == 16
    assert threshold.details["target_trials"] == 4 * 6
    with open(exported / "hyperparams.yaml", encoding="utf-8") as fin:
        text = fin.read()
    assert f"threshold_source: {ESTIMATE_SOURCE}" in text and "an estimate without held-out labels" in text
    with open(exported / "speechbrain_dino.json", encoding="utf-8") as fin:
        assert json.load(fin)["threshold_source"] == ESTIMATE_SOURCE
