"""sbdino-cluster: a folder's files grouped by speaker with the pseudo-label stage's clustering."""
import csv
import json
import os

import numpy as np
import pytest
import torch
from conftest import run_cli, write_tone

from speechbrain_dino.data.manifest import write_manifest
from speechbrain_dino.inference import cluster as cluster_module
from speechbrain_dino.inference.export import Architecture, export_pretrained

ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=32, attention_channels=16,
                   se_channels=16, res2net_scale=4)
#: Files per planted speaker.
SIZES = {"spkA": 24, "spkB": 20, "spkC": 18, "spkD": 16, "spkE": 14}


def cli(capsys, *argv):
    """Runs sbdino-cluster in-process; returns (exit code, stdout, stderr)."""
    return run_cli(cluster_module.main, capsys, *argv)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    torch.manual_seed(0)
    architecture = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})
    return export_pretrained(tmp_path_factory.mktemp("enc") / "pretrained", architecture.build_encoder().eval(),
                             architecture)


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A labelled manifest of short tones whose embeddings are replaced by planted speaker directions."""
    rng = np.random.default_rng(0)
    rows, vectors = [], []
    for speaker, count in SIZES.items():
        centre = rng.standard_normal(48)
        for index in range(count):
            wav = write_tone(str(tmp_path / "audio" / f"{speaker}_{index}.wav"), seconds=0.3, seed=len(rows))
            rows.append({"ID": f"{speaker}_{index}", "duration": "0.3", "wav": wav, "spk_id": speaker})
            vectors.append(centre + 0.25 * rng.standard_normal(48))
    write_manifest(rows, tmp_path / "labelled.csv")
    monkeypatch.setattr(cluster_module, "embed", lambda pretrained, rows_, device: np.asarray(vectors, np.float32))
    return tmp_path / "labelled.csv", np.asarray(vectors)


def read_rows(path):
    with open(path, encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


def test_planted_speakers_give_clusters_distances_outliers_and_both_thresholds(planted, encoder, tmp_path, capsys):
    manifest, vectors = planted
    code, out, err = cli(capsys, manifest, "--pretrained", encoder, "--output_folder", tmp_path / "out")
    assert code == 0, err
    rows = read_rows(tmp_path / "out" / "clusters.csv")
    assert list(rows[0]) == ["ID", "wav", "cluster", "centre_distance", "status", "spk_id"]
    assert [row["ID"] for row in rows] == [f"{speaker}_{i}" for speaker, count in SIZES.items() for i in range(count)]
    clusters = np.array([int(row["cluster"]) for row in rows])
    sizes = np.bincount(clusters)
    assert sizes.min() > 0 and list(sizes) == sorted(sizes, reverse=True)  # 0 is the largest
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for cluster in range(len(sizes)):
        members = clusters == cluster
        direction = unit[members].sum(0) / np.linalg.norm(unit[members].sum(0))
        distances = np.array([float(row["centre_distance"]) for row in rows])[members]
        assert np.allclose(distances, 1 - unit[members] @ direction, atol=2e-4)
        status = np.array([row["status"] for row in rows])[members]
        if {"kept", "outlier"} <= set(status):  # the outliers are the cluster's least typical members
            assert distances[status == "outlier"].mean() > distances[status == "kept"].mean()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cluster_sizes"] == sizes.tolist()
    assert summary["outliers"] == sum(row["status"] == "outlier" for row in rows) > 0
    from speechbrain_dino.pseudo_labels.metrics import cluster_metrics

    expected = cluster_metrics([row["spk_id"] for row in rows], clusters)
    assert summary["against_spk_id"]["all_files"]["nmi"] == pytest.approx(expected["nmi"])
    speakers = np.repeat(np.arange(len(SIZES)), list(SIZES.values()))
    cosines = unit @ unit.T
    across = cosines[~np.equal.outer(speakers, speakers)]
    within = cosines[np.equal.outer(speakers, speakers) & ~np.eye(len(speakers), dtype=bool)].min()
    reference = summary["against_spk_id"]["eer_threshold"]  # separable: the highest drawn across-speaker pair
    assert np.median(across) < reference["value"] < within and reference["eer_percent"] == 0.0
    estimate = summary["decision_threshold_estimate"]
    assert -1 <= estimate["value"] <= 1 and estimate["utterances"] <= len(rows) - summary["outliers"]
    assert os.path.isfile(tmp_path / "out" / "embedding_map.png")
    assert out.startswith(f"{len(rows)} files -> {len(sizes)} clusters") and f"NMI {expected['nmi']:.3f}" in out


def test_a_folder_without_labels_is_clustered_by_the_real_encoder(encoder, tmp_path, capsys):
    for speaker in ("x", "y"):
        for index in range(4):
            write_tone(str(tmp_path / "audio" / speaker / f"{index}.wav"), seconds=0.5 + 0.1 * index, seed=index)
    code, out, err = cli(capsys, tmp_path / "audio", "--pretrained", encoder, "--output_folder", tmp_path / "out")
    assert code == 0, err
    rows = read_rows(tmp_path / "out" / "clusters.csv")
    assert sorted(row["ID"] for row in rows) == sorted(f"{s}--{i}" for s in "xy" for i in range(4))
    assert "spk_id" not in rows[0] and {row["status"] for row in rows} <= {"kept", "outlier"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["files"] == 8 and sum(summary["cluster_sizes"]) == 8 and "against_spk_id" not in summary


def test_bad_input_is_one_error_line(encoder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.wav").write_bytes(b"not audio at all")
    write_tone(str(tmp_path / "broken" / "b.wav"), seconds=0.5)
    write_tone(str(tmp_path / "one" / "a.wav"), seconds=0.5)
    (tmp_path / "no_wav.csv").write_text("ID,duration\nu1,1.0\n")
    cases = {
        "no such folder or manifest": (tmp_path / "missing", encoder),
        "no audio files": (tmp_path / "empty", encoder),
        "a.wav": (tmp_path / "broken", encoder),
        "at least two audio files": (tmp_path / "one", encoder),
        "wav": (tmp_path / "no_wav.csv", encoder),
        "not a pretrained encoder folder": (tmp_path / "one", tmp_path / "empty"),
    }
    for expected, (source, pretrained) in cases.items():
        code, _, err = cli(capsys, source, "--pretrained", pretrained, "--output_folder", tmp_path / "out")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (expected, err)
