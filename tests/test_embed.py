"""Using a trained model: embed a folder (the same vectors as EncoderClassifier one file at a time),
compare two files (with the threshold the export records), rank a folder, clear errors."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli

from speechbrain_dino.data.manifest import write_manifest
from speechbrain_dino.inference.embed import main as embed_main
from speechbrain_dino.inference.export import Architecture, export_pretrained, recorded_threshold
from speechbrain_dino.synthetic.corpus import generate_corpus
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import write_trials

ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=32, attention_channels=16,
                   se_channels=16, res2net_scale=4)
ARCHITECTURE = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})


def cli(capsys, *argv):
    """Runs sbdino-embed in-process; returns (exit code, stdout, stderr)."""
    return run_cli(embed_main, capsys, *argv)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """8 synthetic speakers x 6 utterances: 6 speakers to train on, 2 held out for validation trials."""
    folder = tmp_path_factory.mktemp("corpus")
    rows = generate_corpus(folder / "corpus", speakers=8, utterances=6, emotions=2, seed=3, min_seconds=1.5,
                           max_seconds=2.5)
    speakers = sorted({row["spk_id"] for row in rows})
    train = [row for row in rows if row["spk_id"] in speakers[:6]]
    valid = [row for row in rows if row["spk_id"] in speakers[6:]]
    write_manifest(train, folder / "train.csv")
    write_manifest(valid, folder / "valid.csv")
    write_trials(generate_trials(valid, seed=0), folder / "valid_trials.txt")
    return folder, train


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A small encoder fine-tuned briefly with AAM on the true speakers, validated on held-out ones."""
    folder, _ = corpus
    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    init = export_pretrained(out / "init", ARCHITECTURE.build_encoder().eval(), ARCHITECTURE)
    command = [
        sys.executable, "-m", "speechbrain_dino.recipes.train_aam", "hparams/demo/train_aam.yaml",
        f"--init_from={init}", f"--train_csv={folder / 'train.csv'}", f"--output_folder={out / 'aam'}",
        f"--valid_csv={folder / 'valid.csv'}", f"--valid_trials={folder / 'valid_trials.txt'}",
        "--number_of_epochs=8", "--batch_size=6", "--crop_seconds=1.5",
        "--schedule={frozen_share: 0.25, warmup_share: 0.0625, margin_warmup_share: 0.25, head_lr: 0.01, full_lr: 0.003}",
        "--augment={noise_prob: 0.0, reverb_prob: 0.0}", "--noprogressbar",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "aam" / "pretrained"


def test_embed_writes_what_encoder_classifier_gives_one_file_at_a_time(tmp_path, capsys):
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_dino.data.audio import load_audio

    rows = generate_corpus(tmp_path / "audio", speakers=2, utterances=3, emotions=1, seed=1, min_seconds=1.0,
                           max_seconds=3.0)
    torch.manual_seed(0)
    model = export_pretrained(tmp_path / "pretrained", ARCHITECTURE.build_encoder().eval(), ARCHITECTURE)
    code, out, err = cli(capsys, "--pretrained_path", model, str(tmp_path / "audio" / "wav"),
                         "--output_folder", str(tmp_path / "emb"))
    assert code == 0, err
    vectors = np.load(tmp_path / "emb" / "embeddings.npy")
    with open(tmp_path / "emb" / "index.csv", encoding="utf-8") as fin:
        index = list(csv.DictReader(fin))
    assert len(index) == len(rows) == len(vectors) and set(index[0]) == {"ID", "path"}
    assert index[0]["ID"].startswith("spk") and "--" in index[0]["ID"]  # folder--file
    encoder = EncoderClassifier.from_hparams(source=model, savedir=str(tmp_path / "savedir"))
    with torch.no_grad():
        one_by_one = np.stack([encoder.encode_batch(load_audio(entry["path"]).unsqueeze(0)).reshape(-1).numpy()
                               for entry in index])
    cosine = (vectors * one_by_one).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(one_by_one, axis=1)
    assert cosine.min() >= 0.9999, cosine


def test_the_export_records_the_eer_threshold_and_speechbrain_decides_with_it(trained, corpus):
    from speechbrain.inference.speaker import SpeakerRecognition

    recorded = recorded_threshold(trained)
    # an AAM fine-tuning with validation trials: they win over the estimate from its training clusters
    assert recorded.source == "validation_trials" and recorded.details["target_trials"] > 0
    threshold = recorded.value
    assert -1.0 <= threshold <= 1.0
    verifier = SpeakerRecognition.from_hparams(source=str(trained), savedir=str(trained.parent / "savedir"))
    assert verifier.hparams.verification_threshold == pytest.approx(threshold)
    _, train = corpus
    # SpeechBrain 1.1.2's verify_files hands its keyword arguments to load_audio and decides at
    # verify_batch's default 0.25: its score is taken, the decision made at the recorded threshold
    score, _ = verifier.verify_files(train[0]["wav"], train[1]["wav"])
    wavs = torch.stack([verifier.load_audio(train[0]["wav"]), verifier.load_audio(train[0]["wav"])])
    scores, decisions = verifier.verify_batch(wavs[:1], wavs[1:], threshold=verifier.hparams.verification_threshold)
    assert bool(decisions[0]) == (float(scores[0]) > threshold)


def test_compare_scores_one_speaker_above_two_and_prints_the_decision(trained, corpus, capsys):
    _, train = corpus
    first, same, other = train[0], train[1], next(row for row in train if row["spk_id"] != train[0]["spk_id"])
    assert same["spk_id"] == first["spk_id"]
    scores = {}
    for name, row in (("same", same), ("other", other)):
        code, out, err = cli(capsys, "--pretrained_path", str(trained), "--compare", first["wav"], row["wav"])
        assert code == 0, err
        lines = out.splitlines()
        scores[name] = float(lines[0].split()[1])
        assert "(threshold " in lines[1] and lines[1].split(" (")[0] in ("same speaker", "different speakers")
    assert scores["same"] > scores["other"], scores


def test_rank_lists_a_folders_files_by_similarity(trained, corpus, capsys):
    _, train = corpus
    folder = os.path.dirname(train[1]["wav"])  # the query speaker's own folder
    code, out, err = cli(capsys, "--pretrained_path", str(trained), "--rank", train[0]["wav"], folder, "--top", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    scores = [float(line.split()[0]) for line in lines]
    assert scores == sorted(scores, reverse=True) and lines[0].split()[1] == train[0]["wav"]  # itself first


def test_clear_one_line_errors(tmp_path, capsys, tone_writer):
    torch.manual_seed(0)
    model = export_pretrained(tmp_path / "pretrained", ARCHITECTURE.build_encoder().eval(), ARCHITECTURE)
    good = tone_writer(str(tmp_path / "a.wav"))
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    cases = [
        (["--pretrained_path", str(model), str(tmp_path / "missing")], "no such folder or manifest CSV"),
        (["--pretrained_path", str(tmp_path), "--compare", good, good], "not a pretrained encoder folder"),
        (["--pretrained_path", str(model), "--compare", good, str(tmp_path / "bad.wav")], "cannot read audio"),
    ]
    for argv, message in cases:
        code, out, err = cli(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    code, out, err = cli(capsys, "--pretrained_path", str(model), "--compare", good, good)
    assert code == 0 and out.splitlines()[1].startswith("no decision: this model records no decision threshold")
