"""Shared preparation behaviour, exercised through the folder preparation on generated trees."""

from __future__ import annotations

import json
import os

import pytest

from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.prepare import prepare_folder


def _ids(save_csv):
    return {row["ID"]: row for row in read_manifest(save_csv)}


def test_folder_ids_and_speaker_sources(tmp_path, tone_writer):
    data = tmp_path / "data"
    tone_writer(str(data / "alice" / "a1.wav"), 0.6)
    tone_writer(str(data / "bob" / "day1" / "b1.flac"), 1.25)
    tone_writer(str(data / "bob" / ".hidden.wav"), 0.6)
    (data / "bob" / "notes.txt").write_text("not audio")

    report = prepare_folder(data, tmp_path / "parent.csv")
    rows = _ids(tmp_path / "parent.csv")
    assert set(rows) == {"alice--a1", "bob--day1--b1"}
    assert rows["alice--a1"]["spk_id"] == "alice"
    assert rows["bob--day1--b1"]["spk_id"] == "day1"
    assert rows["bob--day1--b1"]["wav"] == str(data / "bob" / "day1" / "b1.flac")
    assert float(rows["bob--day1--b1"]["duration"]) == pytest.approx(1.25, abs=1e-3)
    assert report["utterances"] == 2 and report["speakers"] == 2 and report["skipped"] == {}
    assert report["hours"] == pytest.approx(1.85 / 3600, abs=1e-4)

    prepare_folder(data, tmp_path / "regex.csv", speaker_regex=r"^(?P<spk>[^/]+)/")
    assert {row["spk_id"] for row in _ids(tmp_path / "regex.csv").values()} == {"alice", "bob"}

    report = prepare_folder(data, tmp_path / "none.csv", speaker="none")
    assert {row["spk_id"] for row in _ids(tmp_path / "none.csv").values()} == {""}
    assert report["speakers"] == 0


def test_folder_unmatched_speakers_are_skipped_or_errors(tmp_path, tone_writer):
    data = tmp_path / "data"
    tone_writer(str(data / "top.wav"), 0.6)
    tone_writer(str(data / "spk" / "x.wav"), 0.6)
    report = prepare_folder(data, tmp_path / "a.csv")
    assert report["skipped"] == {"unexpected_name": 1}
    assert str(data / "top.wav") in report["skipped_examples"]["unexpected_name"][0]

    report = prepare_folder(data, tmp_path / "b.csv", speaker_regex=r"^(?P<spk>sp\w+)/")
    assert report["skipped"] == {"unexpected_name": 1} and report["utterances"] == 1
    with pytest.raises(DataError, match="top.wav: speaker_regex"):
        prepare_folder(
            data, tmp_path / "c.csv", speaker_regex=r"^(?P<spk>sp\w+)/", skip_invalid=False
        )
    with pytest.raises(DataError, match="named group"):
        prepare_folder(data, tmp_path / "d.csv", speaker_regex=r"^(\w+)/")
    with pytest.raises(DataError, match="does not compile"):
        prepare_folder(data, tmp_path / "d.csv", speaker_regex=r"^(?P<spk>")
    with pytest.raises(DataError, match="choose among"):
        prepare_folder(data, tmp_path / "d.csv", speaker="grandparent")


def test_bad_files_are_counted_per_reason_or_raise_when_strict(tmp_path, tone_writer):
    data = tmp_path / "data" / "spk"
    tone_writer(str(data / "good.wav"), 0.6)
    tone_writer(str(data / "short.wav"), 0.2)
    (data / "corrupt.wav").write_bytes(b"RIFF this is not a wave file at all")
    (data / "empty.flac").write_bytes(b"")

    report = prepare_folder(tmp_path / "data", tmp_path / "out.csv")
    assert report["utterances"] == 1
    assert report["skipped"] == {"empty": 1, "too_short": 1, "unreadable": 1}
    assert str(data / "corrupt.wav") in report["skipped_examples"]["unreadable"][0]
    assert "0.200 s < 0.5 s" in report["skipped_examples"]["too_short"][0]

    report = prepare_folder(tmp_path / "data", tmp_path / "out2.csv", min_duration=0.1)
    assert report["utterances"] == 2
    with pytest.raises(DataError) as error:
        prepare_folder(tmp_path / "data", tmp_path / "strict.csv", skip_invalid=False)
    assert str(error.value).startswith(str(data / "corrupt.wav") + ": ")
    assert not os.path.exists(tmp_path / "strict.csv")


def test_missing_folder_duplicates_and_nothing_usable(tmp_path, tone_writer):
    with pytest.raises(DataError, match="data folder not found") as error:
        prepare_folder(tmp_path / "absent", tmp_path / "out.csv")
    assert str(tmp_path / "absent") in str(error.value)

    tone_writer(str(tmp_path / "dup" / "spk" / "a.wav"), 0.6)
    tone_writer(str(tmp_path / "dup" / "spk" / "a.flac"), 0.6)
    with pytest.raises(DataError, match="duplicate ID 'spk--a'") as error:
        prepare_folder(tmp_path / "dup", tmp_path / "out.csv")
    assert "a.wav" in str(error.value) and "a.flac" in str(error.value)

    (tmp_path / "bad" / "spk").mkdir(parents=True)
    (tmp_path / "bad" / "spk" / "x.wav").write_bytes(b"")
    tone_writer(str(tmp_path / "bad" / "spk" / "y.wav"), 0.1)
    with pytest.raises(
        DataError, match=r"no usable audio found in .*bad: 2 skipped: empty 1, too_short 1"
    ):
        prepare_folder(tmp_path / "bad", tmp_path / "out.csv")


def test_skips_when_unchanged_and_reruns_when_options_change(tmp_path, tone_writer):
    data = tmp_path / "data"
    tone_writer(str(data / "spk" / "a.wav"), 0.6)
    save_csv = tmp_path / "out.csv"
    first = prepare_folder(data, save_csv)
    assert first["reused"] is False
    stored = json.loads((tmp_path / "out.csv.opts.json").read_text())
    assert stored["options"]["min_duration"] == 0.5 and stored["options"]["corpus"] == "folder"

    tone_writer(str(data / "spk" / "b.wav"), 0.6)  # not seen while the options are unchanged
    again = prepare_folder(data, save_csv)
    assert again["reused"] is True and again["utterances"] == 1
    assert set(_ids(save_csv)) == {"spk--a"}

    changed = prepare_folder(data, save_csv, min_duration=0.25)
    assert changed["reused"] is False and set(_ids(save_csv)) == {"spk--a", "spk--b"}

    os.remove(tmp_path / "out.csv.opts.json")  # without its options it may be the user's: kept
    before = save_csv.read_text()
    with pytest.raises(DataError, match="not written by a data preparation"):
        prepare_folder(data, save_csv, min_duration=0.25)
    assert save_csv.read_text() == before


def test_other_sample_rates_need_resample(tmp_path, tone_writer):
    data = tmp_path / "data"
    tone_writer(str(data / "spk" / "a.wav"), 0.6)
    tone_writer(str(data / "spk" / "narrow.wav"), 0.75, sample_rate=8000)
    with pytest.raises(DataError, match=r"narrow.wav: sample rate is 8000 Hz.*--resample"):
        prepare_folder(data, tmp_path / "out.csv")
    report = prepare_folder(data, tmp_path / "out.csv", resample=True)
    assert report["resampled_files"] == 1 and report["utterances"] == 2
    assert float(_ids(tmp_path / "out.csv")["spk--narrow"]["duration"]) == pytest.approx(
        0.75, abs=1e-3
    )


def test_a_manifest_the_user_made_is_never_overwritten(tmp_path, tone_writer):
    tone_writer(str(tmp_path / "data" / "spk1" / "a.wav"), seconds=1.0)
    own = tmp_path / "mine.csv"
    own.write_text("ID,duration,wav,spk_id\nhand,1.0,/x.wav,s\n")
    with pytest.raises(DataError, match="not written by a data preparation"):
        prepare_folder(tmp_path / "data", own)
    assert own.read_text() == "ID,duration,wav,spk_id\nhand,1.0,/x.wav,s\n"
    ours = tmp_path / "ours.csv"
    prepare_folder(tmp_path / "data", ours)
    prepare_folder(tmp_path / "data", ours, min_duration=0.1)  # our own output: redone
    assert len(read_manifest(ours)) == 1
