"""Manifest validation and audio loading: bad input gives one DataError naming file and line."""
import numpy as np
import pytest
import soundfile as sf

from speechbrain_dino.data.audio import audio_info, load_audio
from speechbrain_dino.data.manifest import read_manifest, summarize, write_manifest
from speechbrain_dino.errors import DataError


def write_csv(path, text):
    path.write_text(text)
    return path


def test_manifest_round_trip_keeps_columns_and_order(tmp_path):
    rows = [
        {"ID": "a", "duration": 1.5, "wav": "/x/a.wav", "spk_id": "s1", "emotion": "sad", "split": "Train"},
        {"ID": "b", "duration": 2.0, "wav": "/x/b.wav", "spk_id": "s2", "emotion": "", "split": "Test1"},
    ]
    path = tmp_path / "m.csv"
    write_manifest(rows, path)
    assert path.read_text().splitlines()[0] == "ID,duration,wav,spk_id,emotion,split"
    back = read_manifest(path)
    assert [r["ID"] for r in back] == ["a", "b"]
    assert back[0]["duration"] == "1.500" and back[1]["split"] == "Test1"
    assert summarize(back) == {"utterances": 2, "speakers": 2, "hours": round(3.5 / 3600, 4), "emotions": 1}


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("ID,duration,wav\na,1.0,/a.wav\n", 1, "missing column"),
        ("ID,duration,wav,spk_id\na,1.0,/a.wav,s\na,2.0,/b.wav,s\n", 3, "duplicate ID 'a' (first at line 2)"),
        ("ID,duration,wav,spk_id\na,abc,/a.wav,s\n", 2, "is not a number"),
        ("ID,duration,wav,spk_id\na,-1,/a.wav,s\n", 2, "positive"),
        ("ID,duration,wav,spk_id\na,1.0,,s\n", 2, "empty wav"),
        ("ID,duration,wav,spk_id\na,1.0,/a.wav,s,extra\n", 2, "fields"),
    ],
)
def test_bad_manifest_rows_name_file_and_line(tmp_path, text, line, fragment):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as info:
        read_manifest(path)
    assert f"bad.csv, line {line}" in str(info.value)
    assert fragment in str(info.value)


def test_empty_and_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        read_manifest(write_csv(tmp_path / "e.csv", "ID,duration,wav,spk_id\n"))
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "absent.csv")


def test_replacements_resolve_data_root(tmp_path):
    path = write_csv(tmp_path / "m.csv", "ID,duration,wav,spk_id\na,1,$data_root/a.wav,\n")
    assert read_manifest(path, replacements={"data_root": "/data"})[0]["wav"] == "/data/a.wav"


def test_load_audio_segment_resample_and_errors(tmp_path, tone_writer):
    path = tone_writer(str(tmp_path / "a.wav"), seconds=1.0, sample_rate=8000)
    info = audio_info(path)
    assert (info.num_frames, info.sample_rate, info.duration) == (8000, 8000, 1.0)
    with pytest.raises(DataError, match="8000 Hz, expected 16000"):
        load_audio(path)
    full = load_audio(path, resample=True)
    assert full.shape == (16000,)
    part = load_audio(path, resample=True, frame_offset=4000, num_frames=3200)
    assert part.shape == (3200,)
    # the resampling filter sees no context beyond the segment: compare away from its edges
    assert np.allclose(part[100:-100].numpy(), full[4100:7100].numpy(), atol=0.02)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF-not-really-audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    for name, fragment in [("corrupt.wav", "cannot read"), ("empty.wav", "cannot read"), ("none.wav", "not found")]:
        with pytest.raises(DataError) as info:
            load_audio(tmp_path / name)
        assert name in str(info.value) and fragment in str(info.value)


def test_stereo_is_averaged_to_mono(tmp_path):
    stereo = np.stack([np.ones(1600), -np.ones(1600) * 0.5], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "s.wav", stereo, 16000)
    signal = load_audio(tmp_path / "s.wav")
    assert signal.shape == (1600,) and np.allclose(signal.numpy(), 0.125, atol=1e-4)
