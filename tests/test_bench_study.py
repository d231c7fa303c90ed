"""The study script's own logic: speaker-disjoint sets, leak checks, budget planning, report blocks."""
from __future__ import annotations

import os
import re

import pytest

from bench.budget import epochs_for_budget, plain_values, remaining_share
from bench.common import replace_block
from bench.study import System, learning_curve, slug
from bench.study_data import assert_unseen, prepare_study_data
from bench.systems import SYSTEMS, WARM_STARTS
from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.data.manifest import read_manifest, write_manifest


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
