"""The generated corpus: layout, determinism, folder safety, and that it sounds like speech."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view

from speechbrain_dino.data.audio import audio_info
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.synthetic.__main__ import main
from speechbrain_dino.synthetic.corpus import generate_corpus
from speechbrain_dino.synthetic.synthesis import synthesize_utterance
from speechbrain_dino.synthetic.voices import EMOTION_NAMES, speaker_traits

SAMPLE_RATE = 16000
SMALL = dict(speakers=3, utterances=4, emotions=3, seed=5, min_seconds=1.0, max_seconds=2.0)


def _loud_frames(waveform: np.ndarray, fraction: float = 0.25) -> np.ndarray:
    """The loudest ``fraction`` of 40 ms frames (hop 20 ms): ``[N, 640]``."""
    frames = sliding_window_view(waveform.astype(np.float64), 640)[::320]
    energy = (frames**2).mean(axis=1)
    return frames[energy >= np.quantile(energy, 1.0 - fraction)]


def _periodicity(frames: np.ndarray) -> tuple:
    """Per frame: normalised autocorrelation peak for 60-400 Hz, and the f0 it implies."""
    centred = frames - frames.mean(axis=1, keepdims=True)
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(centred, 2 * frames.shape[1])) ** 2)
    size = frames.shape[1]
    autocorrelation = autocorrelation[:, :size] / (size - np.arange(size))  # unbiased
    autocorrelation /= autocorrelation[:, :1]
    low, high = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    window = autocorrelation[:, low - 1 : high + 1]
    local_peak = (window[:, 1:-1] > window[:, :-2]) & (window[:, 1:-1] >= window[:, 2:])
    peaks = np.where(local_peak, window[:, 1:-1], -1.0).max(axis=1)
    # The shortest lag nearly as good as the best: avoids octave-down errors.
    lags = low + np.argmax(local_peak & (window[:, 1:-1] >= 0.9 * peaks[:, None]), axis=1)
    return peaks, SAMPLE_RATE / lags


def _spectral_flatness(frames: np.ndarray) -> np.ndarray:
    power = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1)) ** 2 + 1e-20
    return np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)


def _median_f0(waveforms) -> float:
    """Median f0 over the voiced loud frames of some waveforms."""
    peaks, f0 = _periodicity(np.concatenate([_loud_frames(waveform) for waveform in waveforms]))
    return float(np.median(f0[peaks > 0.5]))


def _wav_bytes(rows) -> dict:
    return {row["ID"]: open(row["wav"], "rb").read() for row in rows}


def test_manifest_counts_and_durations(tmp_path):
    rows = generate_corpus(tmp_path / "corpus", **SMALL)
    manifest = tmp_path / "corpus" / "manifest.csv"
    assert rows == read_manifest(manifest, required=("spk_id", "emotion"))
    assert len(rows) == 12
    assert sorted({row["spk_id"] for row in rows}) == ["spk000", "spk001", "spk002"]
    assert {row["emotion"] for row in rows} == set(EMOTION_NAMES[:3])
    assert rows[5]["ID"] == "spk001_utt0001"
    for row in rows:
        assert os.path.isabs(row["wav"])
        info = audio_info(row["wav"])
        assert info.sample_rate == SAMPLE_RATE and info.channels == 1
        assert 1.0 <= info.duration <= 2.0
        assert float(row["duration"]) == pytest.approx(info.duration, abs=1e-3)
    durations = [float(row["duration"]) for row in rows]
    assert len(set(durations)) == len(durations), "each utterance draws its own length"


def test_same_seed_gives_identical_files_whatever_the_order(tmp_path):
    rows = generate_corpus(tmp_path / "a", **SMALL)
    first = _wav_bytes(rows)
    in_parallel = _wav_bytes(generate_corpus(tmp_path / "b", **SMALL, workers=2))
    assert first == in_parallel
    more_speakers = _wav_bytes(generate_corpus(tmp_path / "c", **{**SMALL, "speakers": 4}))
    assert all(more_speakers[utt_id] == data for utt_id, data in first.items())
    other_seed = _wav_bytes(generate_corpus(tmp_path / "d", **{**SMALL, "seed": 6}))
    assert all(other_seed[utt_id] != data for utt_id, data in first.items())
    assert rows[-1]["ID"] == "spk002_utt0003"
    waveform, _ = sf.read(rows[-1]["wav"])
    regenerated = synthesize_utterance(5, 2, 3, rows[-1]["emotion"], len(waveform))
    np.testing.assert_allclose(waveform, regenerated, atol=1.0 / 32767)


def test_same_options_skip_and_different_options_refuse(tmp_path):
    folder = tmp_path / "corpus"
    rows = generate_corpus(folder, **SMALL)
    stamp = os.stat(rows[0]["wav"]).st_mtime_ns
    assert generate_corpus(folder, **SMALL) == rows
    assert os.stat(rows[0]["wav"]).st_mtime_ns == stamp, "same options must not regenerate"
    with pytest.raises(DataError, match="different corpus"):
        generate_corpus(folder, **{**SMALL, "speakers": 2})
    assert read_manifest(folder / "manifest.csv") == rows
    replaced = generate_corpus(folder, **{**SMALL, "speakers": 2}, overwrite=True)
    assert len(replaced) == 8 and len(read_manifest(folder / "manifest.csv")) == 8
    assert not (folder / "wav" / "spk002").exists(), "stale files of the old corpus remain"


def test_refuses_a_folder_with_a_foreign_manifest(tmp_path):
    (tmp_path / "manifest.csv").write_text("ID,duration,wav,spk_id\nmine,1.0,/x.wav,a\n")
    with pytest.raises(DataError, match="different corpus"):
        generate_corpus(tmp_path, **SMALL)
    assert "mine" in (tmp_path / "manifest.csv").read_text()


@pytest.mark.parametrize(
    "bad",
    [{"emotions": 0}, {"emotions": len(EMOTION_NAMES) + 1}, {"min_seconds": 3.0}, {"speakers": 0}],
)
def test_invalid_options_are_data_errors(tmp_path, bad):
    with pytest.raises(DataError):
        generate_corpus(tmp_path, **{**SMALL, **bad})


def test_voiced_frames_are_harmonic_at_the_speakers_f0():
    rng = np.random.default_rng(0)
    for speaker in range(4):
        waveform = synthesize_utterance(3, speaker, 0, "neutral", 4 * SAMPLE_RATE)
        frames = _loud_frames(waveform)
        peaks, f0 = _periodicity(frames)
        assert np.median(peaks) > 0.6, "loud frames should be voiced"
        assert np.median(_spectral_flatness(frames)) < 0.05
        expected = speaker_traits(3, speaker).f0_hz
        assert expected / 1.5 < np.median(f0[peaks > 0.5]) < expected * 1.5
    noise_frames = _loud_frames(rng.standard_normal(4 * SAMPLE_RATE))
    assert np.mean(_periodicity(noise_frames)[0] > 0.5) == 0.0
    assert np.median(_spectral_flatness(noise_frames)) > 0.4


def test_emotions_shift_f0_for_every_speaker():
    for speaker in range(3):
        # Same utterance indices: same content and channel, only the emotion differs.
        f0 = {}
        for emotion in ("angry", "neutral", "sad"):
            waveforms = [synthesize_utterance(1, speaker, utt, emotion, 3 * SAMPLE_RATE)
                         for utt in range(6)]
            f0[emotion] = _median_f0(waveforms)
        assert f0["angry"] > 1.04 * f0["neutral"] > 1.04**2 * f0["sad"], f0


def test_command_line(tmp_path, capsys):
    args = ["--output_folder", str(tmp_path), "--speakers", "2", "--utterances", "2",
            "--emotions", "2", "--seed", "0", "--min_seconds", "1", "--max_seconds", "1.5"]
    assert main(args) == 0
    assert len(read_manifest(tmp_path / "manifest.csv")) == 4
    assert "'speakers': 2" in capsys.readouterr().out
    assert main(args[:-4] + ["--min_seconds", "1", "--max_seconds", "2"]) == 2
    assert "different corpus" in capsys.readouterr().err
