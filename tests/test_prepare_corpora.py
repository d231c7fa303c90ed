"""Each corpus preparation on a tiny fabricated tree in the corpus's real layout and file names."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.prepare import (
    prepare_cremad,
    prepare_iemocap,
    prepare_librispeech,
    prepare_msp_podcast,
    prepare_ravdess,
    prepare_voxceleb,
)


def _rows(save_csv):
    return {row["ID"]: row for row in read_manifest(save_csv)}


def _labels(save_csv, *columns):
    return {row["ID"]: tuple(row[column] for column in columns) for row in read_manifest(save_csv)}


def test_ravdess_speech_files_actors_and_emotions(tmp_path, tone_writer):
    for name in (
        "Actor_01/03-01-05-01-01-01-01.wav",  # angry
        "Actor_02/03-01-08-02-02-02-02.flac",  # surprised
        "Actor_02/03-01-02-01-01-01-02.wav",  # calm
        "Actor_01/03-02-01-01-01-01-01.wav",  # song
        "Actor_01/01-01-01-01-01-01-01.wav",  # audio-video
        "Actor_01/03-01-03-01-01-01-02.wav",  # actor 02 in Actor_01
        "Actor_01/03-01-09-01-01-01-01.wav",  # no emotion 09
    ):
        tone_writer(str(tmp_path / "rav" / name), 0.3)
    report = prepare_ravdess(tmp_path / "rav", tmp_path / "rav.csv")
    assert _labels(tmp_path / "rav.csv", "spk_id", "emotion") == {
        "03-01-05-01-01-01-01": ("01", "angry"),
        "03-01-08-02-02-02-02": ("02", "surprised"),
        "03-01-02-01-01-01-02": ("02", "calm"),
    }
    assert report["skipped"] == {"not_speech": 2, "unexpected_name": 2}
    assert report["speakers"] == 2 and report["emotions"] == 3

    report = prepare_ravdess(tmp_path / "rav", tmp_path / "angry.csv", emotions=["angry"])
    assert set(_rows(tmp_path / "angry.csv")) == {"03-01-05-01-01-01-01"}
    assert report["skipped"]["label_not_kept"] == 2
    with pytest.raises(DataError, match="choose among"):
        prepare_ravdess(tmp_path / "rav", tmp_path / "x.csv", emotions=["joy"])


def test_cremad_reads_audiowav_only(tmp_path, tone_writer):
    root = tmp_path / "CREMA-D"
    tone_writer(str(root / "AudioWAV" / "1001_DFA_ANG_XX.wav"), 0.3)
    tone_writer(str(root / "AudioWAV" / "1091_IEO_FEA_HI.wav"), 0.3)
    tone_writer(str(root / "AudioWAV" / "1002_TIE_BOR_LO.wav"), 0.3)
    (root / "AudioMP3").mkdir()
    (root / "AudioMP3" / "1001_DFA_ANG_XX.mp3").write_bytes(b"not scanned")
    report = prepare_cremad(root, tmp_path / "crema.csv")
    assert _labels(tmp_path / "crema.csv", "spk_id", "emotion") == {
        "1001_DFA_ANG_XX": ("1001", "angry"),
        "1091_IEO_FEA_HI": ("1091", "fearful"),
    }
    assert report["skipped"] == {"unexpected_name": 1}
    prepare_cremad(root / "AudioWAV", tmp_path / "crema2.csv")
    assert set(_rows(tmp_path / "crema2.csv")) == {"1001_DFA_ANG_XX", "1091_IEO_FEA_HI"}


def test_librispeech_nested_and_flat(tmp_path, tone_writer):
    root = tmp_path / "train-clean-100"
    tone_writer(str(root / "103" / "1240" / "103-1240-0000.flac"), 0.6)
    tone_writer(str(root / "103" / "1240" / "19-198-0002.flac"), 0.6)  # misplaced
    (root / "103" / "1240" / "103-1240.trans.txt").write_text("103-1240-0000 HELLO\n")
    tone_writer(str(tmp_path / "flat" / "19-198-0001.flac"), 0.6)
    tone_writer(str(tmp_path / "flat" / "readme.flac"), 0.6)
    report = prepare_librispeech(root, tmp_path / "nested.csv")
    assert _labels(tmp_path / "nested.csv", "spk_id") == {"103-1240-0000": ("103",)}
    assert report["skipped"] == {"unexpected_name": 1}
    report = prepare_librispeech(tmp_path / "flat", tmp_path / "flat.csv")
    assert _labels(tmp_path / "flat.csv", "spk_id") == {"19-198-0001": ("19",)}
    assert report["skipped"] == {"unexpected_name": 1}


def _write_iemocap(root, tone_writer, label_lines):
    for session, dialog, utterances in (
        (
            "Session1",
            "Ses01F_impro01",
            ("Ses01F_impro01_F000", "Ses01F_impro01_M003", "Ses01F_impro01_F001"),
        ),
        ("Session2", "Ses02M_script01_1", ("Ses02M_script01_1_F001", "Ses02M_script01_1_M002")),
    ):
        for utterance in utterances:
            tone_writer(
                str(root / session / "sentences" / "wav" / dialog / f"{utterance}.wav"), 0.3
            )
        evaluation = root / session / "dialog" / "EmoEvaluation"
        evaluation.mkdir(parents=True, exist_ok=True)
        (evaluation / f"{dialog}.txt").write_text(label_lines[session])


IEMOCAP_LABELS = {
    "Session1": (
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M003\texc\t[3.5000, 3.0000, 3.0000]\n"
        "[12.0000 - 13.0000]\tSes01F_impro01_F001\tfru\t[2.0000, 3.0000, 3.0000]\n"
    ),
    "Session2": "[1.0000 - 2.5000]\tSes02M_script01_1_F001\tsad\t[2.0000, 2.0000, 2.5000]\n",
}


def test_iemocap_speakers_sessions_and_excited_merge(tmp_path, tone_writer):
    root = tmp_path / "IEMOCAP_full_release"
    _write_iemocap(root, tone_writer, IEMOCAP_LABELS)
    report = prepare_iemocap(root, tmp_path / "iemocap.csv")
    assert _labels(tmp_path / "iemocap.csv", "spk_id", "emotion") == {
        "Ses01F_impro01_F000": ("Ses01F", "neutral"),
        "Ses01F_impro01_M003": ("Ses01M", "happy"),
        "Ses02M_script01_1_F001": ("Ses02F", "sad"),
    }
    assert report["skipped"] == {"label_not_kept": 1, "no_label": 1}
    assert "Ses02M_script01_1_M002.wav" in report["skipped_examples"]["no_label"][0]

    report = prepare_iemocap(
        root,
        tmp_path / "separate.csv",
        merge_excited=False,
        emotions=["happy", "excited", "frustrated"],
    )
    assert _labels(tmp_path / "separate.csv", "emotion") == {
        "Ses01F_impro01_M003": ("excited",),
        "Ses01F_impro01_F001": ("frustrated",),
    }
    with pytest.raises(DataError, match="Ses02M_script01_1_M002.wav: no line"):
        prepare_iemocap(root, tmp_path / "strict.csv", skip_invalid=False)


def test_iemocap_bad_label_line_and_layout(tmp_path, tone_writer):
    root = tmp_path / "IEMOCAP_full_release"
    bad = dict(IEMOCAP_LABELS, Session2="[1.0 - 2.5]\tSes02M_script01_1_F001\tjoy\t[2, 2, 2]\n")
    _write_iemocap(root, tone_writer, bad)
    label_file = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt"
    with pytest.raises(DataError, match=f"{label_file}, line 1: expected"):
        prepare_iemocap(root, tmp_path / "out.csv")
    with pytest.raises(DataError, match="no Session1"):
        prepare_iemocap(root / "Session1", tmp_path / "out.csv")


def test_msp_podcast_labels_splits_and_speakers(tmp_path, tone_writer):
    root = tmp_path / "MSP-Podcast"
    for name in (
        "MSP-PODCAST_0001_0008",
        "MSP-PODCAST_0002_0010",
        "MSP-PODCAST_0003_0001",
        "MSP-PODCAST_0004_0002",
    ):
        tone_writer(str(root / "Audios" / f"{name}.wav"), 0.3)
    (root / "Labels").mkdir()
    (root / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0008.wav,A,5.0,2.0,4.4,127,Male,Train\n"
        "MSP-PODCAST_0002_0010.wav,N,4.0,4.0,4.0,Unknown,Unknown,Development\n"
        "MSP-PODCAST_0003_0001.wav,O,3.0,4.2,3.8,45,Female,Test1\n"
        "MSP-PODCAST_0004_0002.wav,C,3.6,3.2,4.0,45,Female,Test2\n"
        "MSP-PODCAST_0005_0003.wav,S,2.0,2.0,2.0,46,Female,Train\n"
    )
    report = prepare_msp_podcast(root, tmp_path / "msp.csv")
    assert _labels(tmp_path / "msp.csv", "spk_id", "emotion", "split") == {
        "MSP-PODCAST_0001_0008": ("127", "angry", "Train"),
        "MSP-PODCAST_0002_0010": ("", "neutral", "Development"),
        "MSP-PODCAST_0004_0002": ("45", "contempt", "Test2"),
    }
    assert report["skipped"] == {"label_not_kept": 1, "missing_audio": 1}
    assert report["speakers"] == 2

    report = prepare_msp_podcast(
        root, tmp_path / "train.csv", splits=["Train", "Test1"], emotions=["angry", "other", "sad"]
    )
    assert set(_rows(tmp_path / "train.csv")) == {"MSP-PODCAST_0001_0008", "MSP-PODCAST_0003_0001"}
    assert report["skipped"] == {"label_not_kept": 2, "missing_audio": 1}

    with open(root / "Labels" / "labels_consensus.csv", "a") as fout:
        fout.write("MSP-PODCAST_0006_0001.wav,Q,1,1,1,1,Male,Train\n")
    with pytest.raises(DataError, match=r"labels_consensus.csv, line 7: .*EmoClass 'Q'"):
        prepare_msp_podcast(root, tmp_path / "bad.csv")


def _write_voxceleb(root, tone_writer):
    for path in (
        "id10001/vidA/00001.wav",
        "id10001/vidB/00002.wav",
        "id10002/vidA/00001.wav",
        "id10003/vidC/00001.wav",
        "id10003/vidC/00002.wav",
        "misc/vid/00001.wav",
    ):
        tone_writer(str(root / path), 0.6)


def test_voxceleb_ids_and_trial_speaker_exclusion(tmp_path, tone_writer):
    root = tmp_path / "vox1" / "wav"
    _write_voxceleb(root, tone_writer)
    report = prepare_voxceleb(root, tmp_path / "all.csv")
    rows = _rows(tmp_path / "all.csv")
    assert set(rows) == {
        "id10001--vidA--00001",
        "id10001--vidB--00002",
        "id10002--vidA--00001",
        "id10003--vidC--00001",
        "id10003--vidC--00002",
    }
    assert rows["id10002--vidA--00001"]["spk_id"] == "id10002"
    assert report["skipped"] == {"unexpected_name": 1}

    trials = tmp_path / "veri_test2.txt"
    trials.write_text(
        "1 id10003/vidC/00001.wav id10003/vidC/00002.wav\n"
        "0 id10003/vidC/00001.wav id10270/x6uYqmx31kE/00001.wav\n\n"
    )
    report = prepare_voxceleb(root, tmp_path / "train.csv", exclude_trials=[trials])
    assert {row["spk_id"] for row in _rows(tmp_path / "train.csv").values()} == {
        "id10001",
        "id10002",
    }
    assert (
        report["trial_speakers"],
        report["excluded_speakers"],
        report["excluded_utterances"],
    ) == (2, 1, 2)

    trials.write_text("1 id10003/vidC/00001.wav id10003/vidC/00002.wav\nid10001/vidA/00001.wav\n")
    with pytest.raises(DataError, match=f"{trials}, line 2: expected 'label path1 path2'"):
        prepare_voxceleb(root, tmp_path / "bad.csv", exclude_trials=[trials])


def test_voxceleb2_m4a_needs_conversion(tmp_path, tone_writer, monkeypatch):
    root = tmp_path / "vox2" / "aac"
    _write_voxceleb(root, tone_writer)
    os.rename(root / "id10002" / "vidA" / "00001.wav", root / "id10002" / "vidA" / "00001.m4a")
    with pytest.raises(
        DataError, match=r"1 \.m4a file.*soundfile cannot decode m4a.*--convert_folder"
    ):
        prepare_voxceleb(root, tmp_path / "out.csv")

    copy_tool = shutil.which("cp")
    tools = tmp_path / "bin"
    tools.mkdir()
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(DataError, match="ffmpeg not found"):
        prepare_voxceleb(root, tmp_path / "out.csv", convert_folder=tmp_path / "converted")
    with pytest.raises(DataError, match="outside data_folder"):
        prepare_voxceleb(root, tmp_path / "out.csv", convert_folder=root / "converted")

    fake = tools / "ffmpeg"
    fake.write_text('#!/bin/sh\necho "moov atom not found" >&2\nexit 1\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    report = prepare_voxceleb(root, tmp_path / "out.csv", convert_folder=tmp_path / "converted")
    assert report["skipped"] == {"unexpected_name": 1, "unreadable": 1}
    assert (
        "00001.m4a: ffmpeg failed: moov atom not found"
        in report["skipped_examples"]["unreadable"][0]
    )

    # A stand-in ffmpeg that copies its input (here a wav under an .m4a name) to its last argument.
    fake.write_text(
        '#!/bin/sh\nwhile [ $# -gt 1 ]; do [ "$1" = "-i" ] && src="$2"; shift; done\n'
        f'exec {copy_tool} "$src" "$1"\n'
    )
    report = prepare_voxceleb(root, tmp_path / "out2.csv", convert_folder=tmp_path / "converted")
    converted = tmp_path / "converted" / "id10002" / "vidA" / "00001.wav"
    assert _rows(tmp_path / "out2.csv")["id10002--vidA--00001"]["wav"] == str(converted)
    assert report["converted_files"] == 1 and report["utterances"] == 5
