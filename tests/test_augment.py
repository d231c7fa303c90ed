"""Noise and reverberation augmentation: shapes, SNR, per-sample decisions, RIR decay and
alignment, folder mode on fabricated MUSAN / RIRS_NOISES trees, and folder errors."""
from __future__ import annotations

import os
from typing import List

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_dino.data import audio_pool
from speechbrain_dino.data.augment import SpeechAugment
from speechbrain_dino.data.noise import batch_babble
from speechbrain_dino.data.reverb import synthetic_rirs
from speechbrain_dino.errors import DataError

SAMPLE_RATE = 16000


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor, valid_frames: torch.Tensor) -> torch.Tensor:
    """``[N]`` SNR of ``noisy - clean`` against ``clean`` over each row's first valid frames."""
    mask = torch.arange(clean.shape[1]) < valid_frames.unsqueeze(1)
    clean_power = (clean.square() * mask).sum(1)
    noise_power = ((noisy - clean).square() * mask).sum(1)
    return 10 * torch.log10(clean_power / noise_power)


def lag_of_peak_correlation(reference: torch.Tensor, signal: torch.Tensor, max_lag: int = 400) -> torch.Tensor:
    """``[N]`` lag (samples) maximising the cross-correlation of each row with its reference."""
    size = 2 * reference.shape[1]
    correlation = torch.fft.irfft(
        torch.fft.rfft(signal, n=size) * torch.fft.rfft(reference, n=size).conj(), n=size
    )
    lags = torch.cat([torch.arange(0, max_lag + 1), torch.arange(-max_lag, 0)])
    window = torch.cat([correlation[:, : max_lag + 1], correlation[:, -max_lag:]], dim=1)
    return lags[window.abs().argmax(1)]


def speechlike(count: int, frames: int, seed: int = 0) -> torch.Tensor:
    """``[N, T]`` white noise with per-row level and a slow amplitude modulation."""
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(frames) / SAMPLE_RATE
    envelope = 1 + 0.8 * torch.sin(2 * torch.pi * 3 * time)
    levels = 0.05 + 0.3 * torch.rand(count, 1, generator=generator)
    return levels * envelope * torch.randn(count, frames, generator=generator)


def write_audio(path: str, signal: np.ndarray) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, signal.astype(np.float32), SAMPLE_RATE)
    return path


@pytest.fixture
def musan_like(tmp_path, tone_writer):
    """noise/ (wav + flac, nested), music/, speech/ (4 talkers) and a stray text file."""
    root = tmp_path / "musan"
    tone_writer(str(root / "noise" / "free-sound" / "noise-0001.wav"), 1.5, seed=1)
    rng = np.random.default_rng(0)
    sf.write(str(root / "noise" / "free-sound" / "noise-0002.flac"), 0.1 * rng.standard_normal(8000), SAMPLE_RATE)
    tone_writer(str(root / "music" / "jamendo" / "music-0001.wav"), 3.0, seed=2)
    for talker in range(4):
        tone_writer(str(root / "speech" / "librivox" / f"speech-{talker}.wav"), 2.0, seed=10 + talker)
    (root / "README").write_text("not audio")
    return str(root)


@pytest.fixture
def rirs_like(tmp_path):
    """simulated_rirs/*/Room*/*.wav and real_rirs_isotropic_noises/ with an RIR and a noise.

    Every RIR has 120 samples of propagation delay before its direct path.
    """
    root = tmp_path / "RIRS_NOISES"
    rng = np.random.default_rng(0)

    def delayed_rir():
        tail = 0.05 * rng.standard_normal(4000) * np.exp(-np.arange(4000) / 800)
        return np.concatenate([np.zeros(120), [0.8], tail])

    write_audio(str(root / "simulated_rirs" / "smallroom" / "Room001" / "Room001-00001.wav"), delayed_rir())
    write_audio(str(root / "simulated_rirs" / "mediumroom" / "Room002" / "Room002-00001.wav"), delayed_rir())
    write_audio(str(root / "real_rirs_isotropic_noises" / "RVB2014_type1_rir_largeroom1_near_angla.wav"), delayed_rir())
    write_audio(str(root / "real_rirs_isotropic_noises" / "RVB2014_type1_noise_largeroom1_1.wav"), rng.standard_normal(8000))
    return str(root)


def test_shape_and_padding_preserved():
    torch.manual_seed(0)
    wavs = speechlike(16, 8000)
    lengths = torch.linspace(0.4, 1.0, 16)
    wavs = wavs * (torch.arange(8000) < (lengths * 8000).round().unsqueeze(1))
    out = SpeechAugment(noise_prob=1.0, reverb_prob=1.0)(wavs, lengths)
    assert out.shape == wavs.shape and out.dtype == wavs.dtype
    assert torch.isfinite(out).all()
    padding = torch.arange(8000) >= (lengths * 8000).round().unsqueeze(1)
    assert torch.equal(out[padding], torch.zeros(int(padding.sum())))


@pytest.mark.parametrize("snr", [0.0, 7.5, 18.0])
def test_noise_reaches_requested_snr_over_valid_length(snr):
    torch.manual_seed(1)
    wavs = speechlike(32, 16000)
    lengths = torch.where(torch.arange(32) % 2 == 0, torch.tensor(1.0), torch.tensor(0.5))
    noise_only = SpeechAugment(
        noise_prob=1.0, reverb_prob=0.0, noise_snr=(snr, snr), babble_snr=(snr, snr)
    )
    out = noise_only(wavs, lengths)
    measured = measured_snr_db(wavs, out, (lengths * 16000).long())
    assert (measured - snr).abs().max() < 1.0


def test_each_sample_draws_its_own_snr():
    torch.manual_seed(2)
    wavs = speechlike(64, 8000)
    out = SpeechAugment(noise_prob=1.0, reverb_prob=0.0, noise_snr=(0, 18), babble_snr=(0, 18))(wavs)
    measured = measured_snr_db(wavs, out, torch.full((64,), 8000))
    assert measured.min() > -1 and measured.max() < 19
    assert measured.max() - measured.min() > 10


@pytest.mark.parametrize("noise_prob, reverb_prob", [(0.5, 0.0), (0.0, 0.5)])
def test_decisions_are_per_sample(noise_prob, reverb_prob):
    torch.manual_seed(3)
    wavs = speechlike(64, 8000)
    out = SpeechAugment(noise_prob=noise_prob, reverb_prob=reverb_prob)(wavs)
    unchanged = (out == wavs).all(1)
    assert 10 < int(unchanged.sum()) < 54
    assert ((out - wavs).abs().amax(1)[~unchanged] > 1e-3).all()


def test_batch_babble_sums_distinct_other_utterances():
    torch.manual_seed(8)
    wavs = torch.randn(8, 20000)  # nearly orthogonal rows: projections reveal the talkers
    unit_rows = wavs / wavs.norm(dim=1, keepdim=True)
    utterance_ids = torch.arange(8) % 4  # two view-major views of four utterances
    rows = torch.arange(8)
    n_talkers = torch.tensor([1, 2, 3, 4, 5, 6, 7, 7])
    babble = batch_babble(wavs, rows, n_talkers, utterance_ids)
    weights = (babble @ unit_rows.T) / 20000**0.5  # ~1 per included talker, ~0 otherwise
    included = weights > 0.5
    assert (weights[~included].abs() < 0.1).all() and (weights[included] - 1).abs().max() < 0.1
    same_utterance = utterance_ids.unsqueeze(1) == utterance_ids.unsqueeze(0)
    assert not (included & same_utterance).any()
    assert (included.sum(1) <= n_talkers).all() and included.sum() > 8
    without_ids = batch_babble(wavs, rows, n_talkers)
    included = (without_ids @ unit_rows.T) / 20000**0.5 > 0.5
    assert torch.equal(included.sum(1), n_talkers) and not included.diagonal().any()


def test_synthetic_rirs_decay_from_a_unit_direct_path():
    torch.manual_seed(4)
    rirs = synthetic_rirs(torch.full((16,), 0.4), torch.zeros(16), SAMPLE_RATE, 12800)
    assert torch.equal(rirs[:, 0], torch.ones(16))
    assert (rirs[:, 1:].abs().amax(1) < 1).all()
    reverberant = rirs.clone()
    reverberant[:, 0] = 0.0
    energy_per_100ms = reverberant.square().reshape(16, 8, 1600).sum(2)
    assert (energy_per_100ms[:, 1] > 100 * energy_per_100ms[:, 6]).all()  # 0.5 s at RT60 0.4 s: 75 dB
    drr = 10 * torch.log10(1 / reverberant.square().sum(1))
    assert torch.allclose(drr, torch.zeros(16), atol=1e-3)


def test_reverb_keeps_alignment_and_level():
    torch.manual_seed(5)
    wavs = speechlike(16, 16000)
    out = SpeechAugment(noise_prob=0.0, reverb_prob=1.0, drr_db=(0.0, 0.0))(wavs)
    assert not torch.equal(out, wavs)
    assert torch.equal(lag_of_peak_correlation(wavs, out), torch.zeros(16, dtype=torch.long))
    assert torch.allclose(out.square().mean(1), wavs.square().mean(1), rtol=1e-3)


def test_folder_mode_uses_all_categories_and_rirs(musan_like, rirs_like):
    torch.manual_seed(6)
    augmenter = SpeechAugment(
        noise_folder=musan_like,
        rir_folder=rirs_like,
        noise_prob=1.0,
        reverb_prob=0.0,
        noise_snr=(5, 5),
        music_snr=(5, 5),
        babble_snr=(5, 5),
        pool_size=4,
    )
    assert augmenter.categories == ["noise", "music", "babble"]
    assert len(augmenter.noise_pools["noise"].files) == 2
    rir_names = sorted(os.path.basename(path) for path in augmenter.rir_pool.files)
    assert rir_names == ["RVB2014_type1_rir_largeroom1_near_angla.wav", "Room001-00001.wav", "Room002-00001.wav"]
    wavs = speechlike(24, 32000)  # longer than two of the files: pooled segments are tiled
    out = augmenter(wavs)
    measured = measured_snr_db(wavs, out, torch.full((24,), 32000))
    assert (measured - 5).abs().max() < 1.0

    augmenter.noise_prob, augmenter.reverb_prob = 0.0, 1.0
    out = augmenter(wavs)
    assert torch.equal(lag_of_peak_correlation(wavs, out), torch.zeros(24, dtype=torch.long))
    pooled_rirs = augmenter.rir_pool.segments
    assert torch.equal(pooled_rirs[:, 0], torch.ones(4))  # delay removed, direct path at 1


def test_pools_stay_bounded_and_refresh_a_few_segments_per_call(musan_like, monkeypatch):
    loads = []
    real_load = audio_pool.load_audio

    def counting_load(path, *args, **kwargs):
        loads.append(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(audio_pool, "load_audio", counting_load)
    torch.manual_seed(7)
    augmenter = SpeechAugment(
        noise_folder=musan_like, noise_prob=1.0, reverb_prob=0.0, pool_size=3, pool_refresh=1
    )
    wavs = speechlike(48, 4000)
    augmenter(wavs)  # every category drawn: each pool filled once, 3 segments each
    assert len(loads) == 3 * 3
    for pool in augmenter.noise_pools.values():
        assert pool.segments.shape == (3, 6 * SAMPLE_RATE)
    augmenter(wavs)  # then one segment replaced per pool and call, whatever the batch size
    assert len(loads) == 3 * 3 + 3


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(DataError, match="noise folder not found") as error:
        SpeechAugment(noise_folder=str(tmp_path / "no_musan"))
    assert error.value.path == str(tmp_path / "no_musan")
    with pytest.raises(DataError, match="RIR folder not found") as error:
        SpeechAugment(rir_folder=str(tmp_path / "no_rirs"))
    assert error.value.path == str(tmp_path / "no_rirs")


def test_folders_without_audio_are_named(tmp_path):
    empty = tmp_path / "empty"
    (empty / "noise").mkdir(parents=True)
    (empty / "noise" / "list.txt").write_text("nothing")
    with pytest.raises(DataError, match="MUSAN layout") as error:
        SpeechAugment(noise_folder=str(empty))
    assert error.value.path == str(empty)
    with pytest.raises(DataError, match="no room impulse responses") as error:
        SpeechAugment(rir_folder=str(empty))
    assert error.value.path == str(empty)


def interferer_sets(babble: torch.Tensor, unit_rows: torch.Tensor) -> List[set]:
    """For each babble row, the set of batch rows found in it (projection ~1)."""
    weights = (babble @ unit_rows.T) / unit_rows.shape[1] ** 0.5
    return [set(torch.nonzero(row > 0.5).flatten().tolist()) for row in weights]


def test_independent_babble_gives_views_of_one_utterance_different_interferers():
    torch.manual_seed(5)
    batch, views = 16, 2
    wavs = torch.randn(batch * views, 20000)
    unit_rows = wavs / wavs.norm(dim=1, keepdim=True)
    utterance_ids = torch.arange(batch * views) % batch
    rows = torch.arange(batch * views)
    n_talkers = torch.full((batch * views,), 3)

    def overlap(independent: bool) -> float:
        talkers = interferer_sets(batch_babble(wavs, rows, n_talkers, utterance_ids, independent), unit_rows)
        utterances = [{int(utterance_ids[t]) for t in found} for found in talkers]
        shared = [len(utterances[u] & utterances[u + batch]) / 3 for u in range(batch)]
        assert all(int(utterance_ids[t]) != u % batch for u, found in enumerate(talkers) for t in found)
        return sum(shared) / batch

    assert overlap(independent=False) == pytest.approx(1.0)  # the shortcut: same interferers
    assert overlap(independent=True) < 0.5
