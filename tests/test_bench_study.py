"""The study script's own logic: speaker-disjoint sets, leak checks, budget planning, report blocks."""
from __future__ import annotations

import argparse
import json
import math
import os
import re

import numpy as np
import pytest

from bench.budget import epochs_for_budget, plain_values, remaining_share
from bench.common import replace_block
from bench.long_horizon import crossing_minutes
from bench.study import GATE_SHARE, Study, System, learning_curve, slug
from bench.study_data import assert_unseen, prepare_study_data
from bench.systems import SYSTEMS, WARM_STARTS
from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.data.manifest import read_manifest, write_manifest
from speechbrain_dino.pseudo_labels.outputs import labels_path


@pytest.fixture
def shared_data(tmp_path, tone_writer):
    """A fabricated benchmark data folder: RAVDESS actors 15-18 (4 files each), 8 LibriSpeech readers."""
    root = tmp_path / "shared"
    for actor in (15, 16, 17, 18):
        for emotion, sentence in (("01", "01"), ("03", "01"), ("03", "02"), ("05", "02")):
            intensity = "01" if emotion == "01" else "02"
            name = f"03-01-{emotion}-{intensity}-{sentence}-01-{actor:02d}.flac"
            tone_writer(str(root / "ravdess" / f"Actor_{actor:02d}" / name), 0.4, seed=actor)
    for index, speaker in enumerate((19, 26, 27, 32, 39, 40, 60, 78)):
        seconds = 2.0 if speaker == 26 else 4.5  # 26 is too short to split: never held out
        tone_writer(str(root / "librispeech_251" / f"{speaker}-100-0001.flac"), seconds, seed=index)
    for index in range(12):  # speechocean762: 12 speakers x 2 utterances
        for utterance in range(2):
            tone_writer(str(root / "speechocean762_train" / f"{index:04d}" / f"{index:04d}-{utterance:03d}.flac"),
                        0.5, seed=100 + 2 * index + utterance)
    return root


def test_evaluation_sets_are_disjoint_from_pretraining(shared_data, tmp_path):
    data = prepare_study_data(str(shared_data), str(tmp_path / "study"))
    pretrain = read_manifest(data.pretrain_csv)
    speakers = {row["spk_id"] for row in pretrain}
    # speechocean762: every 5th speaker (0, 5, 10) is a test speaker, every 6th of the others
    # from the second (2, 9) a development speaker; the 7 others are in the pool
    assert speakers == {"15", "16", "ls26", "ls27", "ls32", "ls39", "ls60", "ls78",
                        *(f"so{index:04d}" for index in (1, 3, 4, 6, 7, 8, 11))}
    assert {row["spk_id"] for row in read_manifest(data.speechocean_test_csv)} == {"so0000", "so0005", "so0010"}
    assert {row["spk_id"] for row in read_manifest(data.dev_csv)} == {"so0002", "so0009"}
    # every 4th splittable reader, sorted by id (ls19 ls27 ls32 ls39 ls40 ...), is held out
    halves = read_manifest(data.librispeech_test_csv)
    assert [row["ID"] for row in halves] == ["19-100-0001_a", "19-100-0001_b", "40-100-0001_a", "40-100-0001_b"]
    assert sum(float(row["duration"]) for row in halves[:2]) == pytest.approx(4.5, abs=1e-3)
    with open(data.librispeech_trials, encoding="utf-8") as fin:
        labels = [line.split()[0] for line in fin]
    assert labels.count("1") == 2 and labels.count("0") == 4
    # RAVDESS targets cross emotion and sentence: per actor (01,01)-(03,02), (01,01)-(05,02), (03,01)-(05,02)
    with open(data.ravdess_trials, encoding="utf-8") as fin:
        targets = [line.split()[1:] for line in fin if line.startswith("1")]
    for enrol, test in targets:
        assert enrol.split("-")[2] != test.split("-")[2] and enrol.split("-")[4] != test.split("-")[4]
    assert len(targets) == 2 * 3
    assert data.eval_speakers == {"17", "18", "ls19", "ls40", "so0000", "so0005", "so0010", "so0002", "so0009"}


def test_a_leak_into_training_data_is_caught(shared_data, tmp_path):
    data = prepare_study_data(str(shared_data), str(tmp_path / "study"))
    rows = read_manifest(data.pretrain_csv)
    held_out = read_manifest(data.ravdess_test_csv)[0]
    write_manifest(rows + [dict(held_out, spk_id="cluster7")], tmp_path / "labels.csv")
    with pytest.raises(AssertionError, match="1 evaluation file"):
        assert_unseen(str(tmp_path / "labels.csv"), data, labelled=False)
    write_manifest(rows + [dict(rows[0], ID="other", spk_id="ls19")], tmp_path / "true.csv")
    assert_unseen(str(tmp_path / "true.csv"), data, labelled=False)
    with pytest.raises(AssertionError, match="ls19"):
        assert_unseen(str(tmp_path / "true.csv"), data, labelled=True)


def test_budget_planning():
    # 1152 rows, batch 32 (drop_last): 36 steps per epoch; 5 min at 1 s per step = 300 steps
    assert epochs_for_budget(5, 1.0, 1152, 32) == 8
    assert epochs_for_budget(5, 0.5, 1152, 32) == 17
    assert epochs_for_budget(0.01, 2.0, 1152, 32) == 1  # never zero
    values = plain_values(os.path.join(HPARAMS_FOLDER, "demo", "train_aam.yaml"))
    assert values["batch_size"] == 32 and values["schedule"]["frozen_share"] == 0.334
    assert values["augment"] is None  # tagged nodes are not built


def test_a_two_part_training_shares_one_budget():
    # a first part of 200 steps at 1.5 s used 5 of 10 minutes; one that overran leaves nothing
    assert remaining_share(10, 200, 1.5) == pytest.approx(0.5)
    assert remaining_share(1, 100, 1.0) == 0.0
    first = System("warm start", "first/pretrained", epochs=2, steps=20, train_minutes=1.5)
    both = System("SDPN", "second/pretrained", epochs=3, steps=30, train_minutes=2.0).after(first)
    assert (both.name, both.pretrained) == ("SDPN", "second/pretrained")
    assert (both.epochs, both.steps, both.train_minutes) == (5, 50, 3.5)
    # the study's pretraining is the demo pipeline's: a warm start named there
    pipeline = plain_values(os.path.join(HPARAMS_FOLDER, "demo", "pipeline.yaml"))
    assert pipeline["warm_start_hparams"] and pipeline["pretraining_name"]


def test_generated_blocks_replace_only_themselves():
    text = "# B\nprose\n<!-- run_all:a -->\nold a\n<!-- /run_all:a -->\nmiddle\n<!-- run_all:b -->\nold b\n<!-- /run_all:b -->\n"
    text = replace_block(text, "a", "new a\n")
    assert "new a" in text and "old a" not in text and "old b" in text and "middle" in text
    text = replace_block(text, "c", "fresh")
    assert text.endswith("<!-- run_all:c -->\nfresh\n<!-- /run_all:c -->\n")
    assert replace_block(text, "a", "new a") == text  # idempotent


def test_objectives_study_reads_learning_curves_and_names_folders(tmp_path):
    log = tmp_path / "train_log.txt"
    log.write_text(
        "epoch: 1, steps: 61, lr: 1e-3 - train loss: 5.1 - valid EER: 16.5, valid minDCF_0.01: 0.9\n"
        "epoch: 2, steps: 122, lr: 1e-3 - train loss: 4.2\n"  # an epoch without validation
        "epoch: 3, steps: 183, lr: 1e-3 - train loss: 3.9 - valid EER: 14.25, valid minDCF_0.01: 0.8\n"
    )
    assert learning_curve(str(log)) == [(61, 16.5), (183, 14.25)]
    folders = [slug(name) for name in [*SYSTEMS, *WARM_STARTS]]
    assert len(set(folders)) == len(folders) and all(re.fullmatch(r"[a-z0-9_]+", f) for f in folders)
    for first, second in WARM_STARTS.values():
        assert first in SYSTEMS and second in SYSTEMS


class RecordingStages:
    """Stands in for the stage API in the studies' rounds: records each stage and leaves what it
    would (pseudo-labels of the pool in 3 clusters, or with ``leak`` an evaluation file too)."""

    def __init__(self, leak=None):
        self.calls = []
        self.leak = leak

    def pseudo_label(self, hparams_file, pretrained, train_csv, folder, overrides=None, name="pseudo-labels"):
        self.calls.append(("pseudo_label", hparams_file, pretrained, folder, dict(overrides or {}), name))
        rows = [dict(row, spk_id=f"cluster{index % 3}") for index, row in enumerate(read_manifest(train_csv))]
        os.makedirs(folder, exist_ok=True)
        write_manifest(rows + ([dict(self.leak, spk_id="cluster0")] if self.leak else []), labels_path(folder))
        with open(os.path.join(folder, "report.json"), "w", encoding="utf-8") as fout:
            json.dump({"clusters_after_filtering": 3}, fout)
        return folder

    def train_aam(self, hparams_file, train_csv, init_from, folder, overrides=None, name="AAM fine-tuning"):
        self.calls.append(("train_aam", hparams_file, train_csv, init_from, folder, dict(overrides or {}), name))
        return os.path.join(folder, "pretrained")


def demo_yaml(name):
    return os.path.join(HPARAMS_FOLDER, "demo", name)


def test_run_all_rounds_are_the_pipelines_with_budgeted_fine_tuning(shared_data, tmp_path):
    from bench.run_all import MainStudy

    study = MainStudy(argparse.Namespace(output_folder=str(tmp_path / "study"), gpu=False, budget=1.0, rounds=2))
    study.data = prepare_study_data(str(shared_data), study.folder("data"))
    os.makedirs(study.folder("calibration"))
    with open(study.folder("calibration", "aam.json"), "w", encoding="utf-8") as fout:  # a measured AAM step: 1 s
        json.dump({"seconds_per_step": 1.0, "peak_rss_gb": 0.1}, fout)
    study.stages = stages = RecordingStages()
    systems = study.pseudo_label_rounds(System("start", "start/pretrained"))

    # as before the rounds moved to RoundRunner: the demo YAMLs, rounds/round<k>/, no clustering
    # overrides, the budget's epochs the only AAM override (not the pipeline's epochs from the clusters)
    epochs = epochs_for_budget(1.0, 1.0, len(read_manifest(study.data.pretrain_csv)), 32)
    start = "start/pretrained"
    for index in (1, 2):
        (kind, hparams, init, folder, overrides, name), aam = stages.calls[2 * index - 2: 2 * index]
        assert (kind, init, overrides, name) == ("pseudo_label", start, {}, f"round {index}: pseudo-labels")
        assert os.path.samefile(hparams, demo_yaml("pseudo_label.yaml"))
        assert folder == study.folder("rounds", f"round{index}", "labels")
        assert aam[0] == "train_aam" and os.path.samefile(aam[1], demo_yaml("train_aam.yaml"))
        assert aam[2:] == (labels_path(folder), start, study.folder("rounds", f"round{index}", "aam"),
                           {"number_of_epochs": epochs}, f"round {index}: AAM fine-tuning")
        start = os.path.join(aam[4], "pretrained")
    assert len(stages.calls) == 4  # no gate: the demo pipeline's is off
    assert [(s.name, s.pretrained, s.epochs, s.clustering) for s in systems] == [
        (f"round {index}", study.folder("rounds", f"round{index}", "aam", "pretrained"), epochs,
         {"clusters_after_filtering": 3}) for index in (1, 2)]

    # a pseudo-label manifest holding an evaluation file stops the study
    study.output = str(tmp_path / "leaky")
    study.stages = RecordingStages(leak=read_manifest(study.data.ravdess_test_csv)[0])
    with pytest.raises(AssertionError, match="evaluation file"):
        study.pseudo_label_rounds(System("start", "start/pretrained"))


def test_rounds_study_runs_the_demo_pipelines_rounds_with_the_gate(shared_data, tmp_path):
    from bench.rounds_study import gated_rounds

    study = Study(argparse.Namespace(output_folder=str(tmp_path / "rounds"), gpu=False))
    study.data = prepare_study_data(str(shared_data), study.folder("data"))
    rounds = gated_rounds(study)
    pipeline = plain_values(os.path.join(HPARAMS_FOLDER, "demo", "pipeline.yaml"))
    assert rounds.folder == study.output and rounds.train_csv == study.data.pretrain_csv
    assert rounds.settings.gate_share == GATE_SHARE == 0.2
    assert rounds.settings.seed + 1 == 1  # round k's hold-out draws with seed k, as before
    for key, name in (("pseudo_label_hparams", "pseudo_label.yaml"), ("aam_hparams", "train_aam.yaml")):
        assert os.path.samefile(getattr(rounds.settings, key), demo_yaml(name))
    assert os.path.samefile(rounds.settings.verification_hparams, os.path.join(HPARAMS_FOLDER, "verification.yaml"))
    assert rounds.settings.clustering_overrides(1) == {} == rounds.settings.clustering_overrides(2)
    assert rounds.aam_overrides == {**pipeline["aam_overrides"], "valid_csv": study.data.dev_csv,
                                    "valid_trials": study.data.dev_trials}
    assert rounds.check_labels == study.check_labels


@pytest.mark.parametrize("slope, intercept, expected", [
    (-0.1, 0.5, math.exp(5.0)),  # worse now, falling: comes down to 0 at exp(5) minutes
    (-0.1, 0.2, math.exp(2.0)),  # falling and already at or below 0 by 80 minutes: crossed at exp(2)
    (0.15, -0.02, math.inf),     # rising and above 0 at 80 minutes: the gap grows, never closes
    (0.05, -1.0, 0.0),           # rising but still below 0 at 80 minutes: not worse
    (0.0, 0.3, math.inf),        # flat above 0
])
def test_the_gap_trend_comes_down_to_zero_only_when_it_falls(slope, intercept, expected):
    """A line of log EER ratio against log minutes that rises never closes the gap, even if it was
    below 0 before the first minute (the extrapolated past crossing is not a future one)."""
    crossing = crossing_minutes(np.array([slope]), np.array([intercept]), 80.0)[0]
    assert crossing == pytest.approx(expected) if math.isfinite(expected) else crossing == expected
