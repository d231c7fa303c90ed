"""The issue's bad inputs: each gives a clean one-line error, a logged skip or the right result."""
import logging
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import file_size_limit, write_tone
from dino_setup import TINY_OVERRIDES, tone_corpus

from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.data.audio import load_audio
from speechbrain_dino.data.file_modes import shareable
from speechbrain_dino.data.manifest import read_manifest, write_manifest
from speechbrain_dino.data.short_clips import MIN_CLIP_SECONDS, drop_short_rows
from speechbrain_dino.emotion.evaluation import evaluate_emotion
from speechbrain_dino.emotion.folds import Fold
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.embeddings import extract_embeddings, load_encoder
from speechbrain_dino.inference.export import ENCODER_FILE, Architecture, export_pretrained, load_pretrained_encoder
from speechbrain_dino.prepare.librispeech import prepare_librispeech
from speechbrain_dino.training.run_inputs import claim_output_folder
from speechbrain_dino.verification import make_trials

ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=32,
                   attention_channels=16, se_channels=16, res2net_scale=4)
DEMO_DINO = os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml")


@pytest.fixture
def encoder_folder(tmp_path):
    torch.manual_seed(0)
    architecture = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})
    return export_pretrained(tmp_path / "enc" / "pretrained", architecture.build_encoder().eval(), architecture)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The tiny preset without its batch size (the tests set their own).
TINY = [option for option in TINY_OVERRIDES if not option.startswith("--batch_size")]


def run_recipe(recipe, *args):
    """Runs ``speechbrain_dino.recipes.<recipe>`` in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", f"speechbrain_dino.recipes.{recipe}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


def exits_with_one_line(recipe, *args):
    """Runs a recipe; returns its single ``error:`` line (asserting exit 2 and no traceback)."""
    result = run_recipe(recipe, *args)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def verification_error(tmp_path, encoder_folder, test_csv, trial_lines, output_folder):
    """The error line of eval_verification on ``trial_lines`` (written to trials.txt)."""
    trials = tmp_path / "trials.txt"
    trials.write_text(trial_lines)
    return exits_with_one_line(
        "eval_verification", "hparams/verification.yaml", f"--pretrained_path={encoder_folder}",
        f"--test_csv={test_csv}", f"--trials={trials}", f"--output_folder={output_folder}",
    )


def manifest(folder, seconds_by_id, speakers=None):
    rows = []
    for index, (utt_id, seconds) in enumerate(seconds_by_id.items()):
        wav = write_tone(os.path.join(folder, f"{utt_id}.wav"), seconds=seconds, seed=index)
        rows.append({"ID": utt_id, "duration": seconds, "wav": wav, "spk_id": (speakers or {}).get(utt_id, "")})
    path = os.path.join(folder, "m.csv")
    write_manifest(rows, path)
    return path


# ------------------------------------------------------------------ 3. very short clips
def test_extraction_pads_a_very_short_clip_and_leaves_longer_ones_unchanged(tmp_path, encoder_folder):
    rows = read_manifest(manifest(str(tmp_path), {"tiny": 0.02, "a": 1.0, "b": 1.3}))
    table = extract_embeddings(encoder_folder, rows)
    assert table.vectors.shape[0] == 3 and np.isfinite(table.vectors).all()
    alone = extract_embeddings(encoder_folder, rows[1:])
    np.testing.assert_allclose(table.vectors[1:], alone.vectors, rtol=0, atol=0)


def test_the_exported_folder_takes_a_very_short_clip_in_encoder_classifier(tmp_path, encoder_folder):
    encoder = load_encoder(encoder_folder)
    assert torch.isfinite(encoder.encode_batch(torch.randn(1, 320))).all()
    one_second = torch.randn(1, 16000)
    plain = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40}).build_features()
    torch.testing.assert_close(encoder.mods.compute_features(one_second), plain(one_second), rtol=0, atol=0)


def test_preparation_skips_and_training_leaves_out_clips_below_the_floor(tmp_path, caplog):
    write_tone(str(tmp_path / "flat" / "19-198-0001.flac"), seconds=0.05)
    write_tone(str(tmp_path / "flat" / "19-198-0002.flac"), seconds=0.6)
    report = prepare_librispeech(tmp_path / "flat", tmp_path / "libri.csv", min_duration=0.001)
    assert report["utterances"] == 1 and report["skipped"] == {"too_short": 1}
    rows = [{"ID": "a", "duration": MIN_CLIP_SECONDS / 2}, {"ID": "b", "duration": 1.0}]
    with caplog.at_level(logging.WARNING):
        assert [row["ID"] for row in drop_short_rows(rows, "m.csv")] == ["b"]
    assert "left out 1 utterance(s) shorter than" in caplog.text


# ------------------------------------------------------------ 4. silent wrong results
def test_a_batch_larger_than_the_training_set_is_an_error_not_an_untrained_export(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=4)
    line = exits_with_one_line(
        "train_dino", DEMO_DINO, f"--train_csv={train_csv}", f"--output_folder={tmp_path / 'o'}",
        *TINY, "--batch_size=8", "--number_of_epochs=1",
    )
    assert "no training step" in line and "--batch_size" in line
    assert not (tmp_path / "o" / "pretrained").exists()


def test_a_finished_output_folder_refuses_another_train_csv(tmp_path):
    first = tone_corpus(str(tmp_path / "one"), count=4)
    second = tone_corpus(str(tmp_path / "two"), count=5)
    args = [f"--output_folder={tmp_path / 'o'}", *TINY_OVERRIDES, "--number_of_epochs=1"]
    assert run_recipe("train_dino", DEMO_DINO, f"--train_csv={first}", *args).returncode == 0
    exported = (tmp_path / "o" / "pretrained" / "speechbrain_dino.json").read_text()
    line = exits_with_one_line("train_dino", DEMO_DINO, f"--train_csv={second}", *args)
    assert "was trained with --train_csv=" in line and "use a new --output_folder" in line
    assert (tmp_path / "o" / "pretrained" / "speechbrain_dino.json").read_text() == exported


def test_aam_on_a_single_speaker_is_an_error(tmp_path, encoder_folder):
    train_csv = manifest(str(tmp_path), {"a": 1.0, "b": 1.0}, speakers={"a": "s1", "b": "s1"})
    line = exits_with_one_line(
        "train_aam", os.path.join(HPARAMS_FOLDER, "demo", "train_aam.yaml"), f"--train_csv={train_csv}",
        f"--init_from={encoder_folder}", f"--output_folder={tmp_path / 'aam'}",
    )
    assert "1 speaker label(s)" in line and "at least 2" in line


@pytest.mark.parametrize("speakers", [{"a": "s1", "b": "s1", "c": "s1"}, {"a": "s1", "b": "s2", "c": "s3"}])
def test_make_trials_refuses_a_list_of_one_kind(tmp_path, capsys, speakers):
    path = manifest(str(tmp_path), {"a": 1.0, "b": 1.0, "c": 1.0}, speakers=speakers)
    assert make_trials.main(["--manifest", path, "--output", str(tmp_path / "t.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "need both kinds" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t.txt").exists()


def test_an_emotion_fold_whose_test_part_has_one_class_is_skipped_and_logged(caplog):
    rng = np.random.default_rng(0)
    speakers = np.repeat([f"s{i}" for i in range(6)], 4)
    labels = np.tile(["happy", "happy", "sad", "sad"], 6)
    embeddings = rng.standard_normal((24, 8)) + (labels == "sad")[:, None]
    rows = np.arange(24)
    one_class = Fold("one_class", rows[speakers != "s0"], rows[(speakers == "s0") & (labels == "happy")])
    mixed = Fold("mixed", rows[speakers != "s1"], rows[speakers == "s1"])
    with caplog.at_level(logging.WARNING):
        results = evaluate_emotion(embeddings, labels, [one_class, mixed], speakers)
    assert [fold.name for fold in results.folds] == ["mixed"] and results.skipped_folds == ["one_class"]
    assert "fold one_class skipped" in caplog.text and "1 skipped" in results.summary()
    with pytest.raises(DataError, match="every fold's test part holds a single emotion"):
        evaluate_emotion(embeddings, labels, [one_class], speakers)


# ------------------------------------------------------------------- 5. smaller ones
def test_a_manifest_with_a_byte_order_mark_reads(tmp_path):
    path = manifest(str(tmp_path), {"a": 1.0})
    with open(path, "rb") as fin:
        content = fin.read()
    with open(path, "wb") as fout:
        fout.write(b"\xef\xbb\xbf" + content)
    assert read_manifest(path)[0]["ID"] == "a"


def test_a_missing_or_corrupt_encoder_checkpoint_is_one_clear_error(encoder_folder):
    weights = os.path.join(encoder_folder, ENCODER_FILE)
    with open(weights, "wb") as fout:
        fout.write(b"PK\x03\x04 not a checkpoint")
    for load in (load_encoder, load_pretrained_encoder):
        with pytest.raises(DataError, match="cannot load the encoder|cannot load encoder weights") as error:
            load(encoder_folder)
        assert len(str(error.value).splitlines()) == 1
    os.remove(weights)
    for load in (load_encoder, load_pretrained_encoder):
        with pytest.raises(DataError, match=f"no {ENCODER_FILE}"):
            load(encoder_folder)


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, encoder_folder):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder cannot be created below a file (root or not)
    path = manifest(str(tmp_path), {"a": 1.0, "b": 1.0, "c": 1.0}, speakers={"a": "s1", "b": "s1", "c": "s2"})
    assert make_trials.main(["--manifest", path, "--output", str(blocker / "t.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "a_file" in err and len(err.splitlines()) == 1
    assert "a_file" in verification_error(tmp_path, encoder_folder, path, "1 a b\n0 a c\n", blocker / "eval")


def test_an_export_past_a_file_size_limit_is_one_clear_error_and_keeps_the_previous(encoder_folder):
    before = torch.load(os.path.join(encoder_folder, ENCODER_FILE))
    architecture = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})
    with file_size_limit(20_000), pytest.raises(DataError) as raised:  # the weights are about 210 kB
        export_pretrained(encoder_folder, architecture.build_encoder(), architecture)
    assert str(raised.value).startswith(f"{encoder_folder}: cannot write the exported model (torch.save failed: ")
    assert os.listdir(os.path.dirname(encoder_folder)) == ["pretrained"]
    after = torch.load(os.path.join(encoder_folder, ENCODER_FILE))
    assert all(torch.equal(after[key], value) for key, value in before.items())


def test_manifests_and_exports_are_readable_by_others(tmp_path, encoder_folder):
    path = manifest(str(tmp_path), {"a": 1.0})
    assert stat.S_IMODE(os.stat(path).st_mode) == shareable(0o644)
    assert stat.S_IMODE(os.stat(encoder_folder).st_mode) == shareable(0o755)


def test_a_wrong_sample_rate_names_the_resample_setting(tmp_path):
    wav = write_tone(str(tmp_path / "x.wav"), sample_rate=8000)
    with pytest.raises(DataError, match=r"--resample=True"):
        load_audio(wav, sample_rate=16000)


def test_eval_verification_checks_the_trial_list_before_embedding(tmp_path, encoder_folder):
    path = manifest(str(tmp_path), {"a": 1.0, "b": 1.0})
    os.remove(tmp_path / "a.wav")  # embedding first would fail on this file instead
    line = verification_error(tmp_path, encoder_folder, path, "1 a b\n0 a\n", tmp_path / "eval")
    assert "trials.txt, line 2" in line


def test_librispeech_by_speaker_folders_are_read(tmp_path):
    root = tmp_path / "by_speaker"
    write_tone(str(root / "103" / "103-1240-0000.flac"), seconds=0.6)
    write_tone(str(root / "103" / "103-1241-0001.flac"), seconds=0.6)
    write_tone(str(root / "103" / "19-198-0001.flac"), seconds=0.6)  # another speaker's: misplaced
    report = prepare_librispeech(root, tmp_path / "libri.csv")
    assert {row["ID"]: row["spk_id"] for row in read_manifest(tmp_path / "libri.csv")} == {
        "103-1240-0000": "103", "103-1241-0001": "103"}
    assert report["skipped"] == {"unexpected_name": 1}


def test_an_output_folder_resumes_with_the_same_manifest_even_moved(tmp_path):
    first = manifest(str(tmp_path / "one"), {"a": 1.0})
    claim_output_folder(tmp_path, {"train_csv": first})
    moved = tmp_path / "moved.csv"
    moved.write_bytes(open(first, "rb").read())
    claim_output_folder(tmp_path, {"train_csv": moved})
    moved.write_text(moved.read_text() + "b,1.0,x.wav,\n")
    with pytest.raises(DataError, match="was trained with --train_csv="):
        claim_output_folder(tmp_path, {"train_csv": moved})
