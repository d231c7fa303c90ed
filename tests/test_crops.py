"""Multi-crop and single-crop sampling: bounds, independence, seeding, repetition padding,
windowed reading of long files, and batching through SpeechBrain's dataset and PaddedBatch."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from torch.utils.data import DataLoader

from speechbrain_dino.data import crops
from speechbrain_dino.data.crops import (
    MultiCropSpec,
    multicrop_pipeline,
    random_crop_pipeline,
    sample_crops,
)

SAMPLE_RATE = 16000
SMALL_SPEC = MultiCropSpec(n_global=2, global_seconds=1.0, n_local=4, local_seconds=0.5)


def write_ramp(path: str, seconds: float) -> str:
    """A float WAV whose sample k holds (k + 1) / 2**20: every value gives its position."""
    frames = int(seconds * SAMPLE_RATE)
    sf.write(path, (np.arange(1, frames + 1) / 2**20).astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    return path


def ramp_positions(crop: torch.Tensor) -> torch.Tensor:
    """File positions of the samples of a crop cut from :func:`write_ramp`'s file."""
    return (crop.double() * 2**20).round().long() - 1


def assert_contiguous_in_file(crop: torch.Tensor, file_frames: int) -> int:
    """Checks the crop is one contiguous slice inside the file; returns its offset."""
    positions = ramp_positions(crop)
    offset = int(positions[0])
    assert torch.equal(positions, torch.arange(offset, offset + crop.shape[0]))
    assert 0 <= offset and offset + crop.shape[0] <= file_frames
    return offset


def run_pipeline(pipeline, path: str, duration: float, keys):
    """The values a dynamic-item pipeline provides for one manifest row, in ``keys`` order."""
    dataset = DynamicItemDataset({"utt": {"wav": path, "duration": duration}})
    dataset.add_dynamic_item(pipeline)
    dataset.set_output_keys(keys)
    item = dataset[0]
    return [item[key] for key in keys]


MULTICROP_KEYS = ["global_crops", "local_crops", "n_padded_crops"]


@pytest.fixture
def recorded_reads(monkeypatch):
    """Keyword arguments of every ``load_audio`` call the crop pipelines make."""
    reads = []
    real_load = crops.load_audio

    def recording_load(*args, **kwargs):
        reads.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(crops, "load_audio", recording_load)
    return reads


def test_crops_are_exact_slices_within_bounds_and_cover_the_signal():
    signal = torch.arange(1000, dtype=torch.float32)
    drawn, n_padded = sample_crops(signal, 300, 400, torch.Generator().manual_seed(0))
    assert drawn.shape == (400, 300) and n_padded == 0
    offsets = drawn[:, 0].long()
    assert torch.equal(drawn, (offsets.unsqueeze(1) + torch.arange(300)).float())
    assert offsets.min() >= 0 and offsets.max() <= 700
    # independent uniform positions: many distinct ones, reaching both ends of the range
    assert offsets.unique().numel() > 200
    assert offsets.min() < 50 and offsets.max() > 650


def test_same_seed_same_crops_other_seed_other_crops():
    signal = torch.randn(5000)

    def draw(seed):
        return sample_crops(signal, 1000, 6, torch.Generator().manual_seed(seed))[0]

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_short_signal_is_tiled_from_a_random_phase_and_counted():
    signal = torch.randn(100)
    drawn, n_padded = sample_crops(signal, 250, 5, torch.Generator().manual_seed(1))
    assert drawn.shape == (5, 250) and n_padded == 5
    tiled = signal.repeat(4)
    for crop in drawn:
        phase = int((signal == crop[0]).nonzero()[0])
        assert torch.equal(crop, tiled[phase : phase + 250])


def test_multicrop_pipeline_reads_once_and_slices_the_file(tmp_path, recorded_reads):
    path = write_ramp(str(tmp_path / "utt.wav"), 2.5)
    reads = recorded_reads
    pipeline = multicrop_pipeline(SMALL_SPEC, generator=torch.Generator().manual_seed(0))
    global_crops, local_crops, n_padded = run_pipeline(pipeline, path, 2.5, MULTICROP_KEYS)
    assert len(reads) == 1 and reads[0].get("num_frames", -1) == -1  # short enough: whole file
    assert global_crops.shape == (2, 16000) and local_crops.shape == (4, 8000)
    assert global_crops.dtype == torch.float32 and n_padded == 0
    for crop in [*global_crops, *local_crops]:
        assert_contiguous_in_file(crop, 40000)


def test_long_utterance_is_read_in_one_random_window(tmp_path, recorded_reads):
    path = write_ramp(str(tmp_path / "long.wav"), 12.0)
    reads = recorded_reads
    pipeline = multicrop_pipeline(SMALL_SPEC)  # window: 3 x 1 s global crop
    torch.manual_seed(0)
    window_starts = []
    for _ in range(20):
        global_crops, local_crops, _ = run_pipeline(pipeline, path, 12.0, MULTICROP_KEYS)
        offsets = [assert_contiguous_in_file(c, 12 * SAMPLE_RATE) for c in [*global_crops, *local_crops]]
        ends = [o + c.shape[0] for o, c in zip(offsets, [*global_crops, *local_crops])]
        assert max(ends) - min(offsets) <= 3 * SAMPLE_RATE
        window_starts.append(reads[-1]["frame_offset"])
    assert len(reads) == 20 and all(r["num_frames"] == 3 * SAMPLE_RATE for r in reads)
    assert min(window_starts) < 3 * SAMPLE_RATE and max(window_starts) > 6 * SAMPLE_RATE


def test_short_utterance_is_padded_by_repetition_and_flagged(tmp_path):
    path = write_ramp(str(tmp_path / "short.wav"), 0.3)
    global_crops, local_crops, n_padded = run_pipeline(multicrop_pipeline(SMALL_SPEC), path, 0.3, MULTICROP_KEYS)
    assert global_crops.shape == (2, 16000) and local_crops.shape == (4, 8000)
    assert n_padded == 6
    for crop in [*global_crops, *local_crops]:
        positions = ramp_positions(crop)
        assert torch.equal(positions, (positions[0] + torch.arange(crop.shape[0])) % 4800)


def test_random_crop_pipeline_reads_only_the_crop(tmp_path, recorded_reads):
    long_path = write_ramp(str(tmp_path / "long.wav"), 5.0)
    short_path = write_ramp(str(tmp_path / "short.wav"), 0.5)
    reads = recorded_reads
    pipeline = random_crop_pipeline(2.0)
    sig, n_padded = run_pipeline(pipeline, long_path, 5.0, ["sig", "n_padded_crops"])
    assert sig.shape == (32000,) and n_padded == 0 and reads[-1]["num_frames"] == 32000
    assert_contiguous_in_file(sig, 80000)
    sig, n_padded = run_pipeline(pipeline, short_path, 0.5, ["sig", "n_padded_crops"])
    assert sig.shape == (32000,) and n_padded == 1


def test_pipeline_batches_through_dynamic_item_dataset_and_padded_batch(tmp_path):
    seconds = {"a": 3.0, "b": 0.4, "c": 9.0}
    data = {
        utt: {"wav": write_ramp(str(tmp_path / f"{utt}.wav"), dur), "duration": dur}
        for utt, dur in seconds.items()
    }
    dataset = DynamicItemDataset(data)
    dataset.add_dynamic_item(multicrop_pipeline(SMALL_SPEC))
    dataset.set_output_keys(["id", "global_crops", "local_crops", "n_padded_crops"])
    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=PaddedBatch)))
    global_crops, global_lengths = batch.global_crops
    local_crops, local_lengths = batch.local_crops
    assert global_crops.shape == (3, 2, 16000) and local_crops.shape == (3, 4, 8000)
    assert torch.equal(global_lengths, torch.ones(3)) and torch.equal(local_lengths, torch.ones(3))
    assert batch.n_padded_crops.tolist() == [0, 6, 0]
    assert os.path.basename(data[batch.id[1]]["wav"]) == "b.wav"


def test_spread_global_crops_never_overlap_when_the_utterance_holds_them():
    generator = torch.Generator().manual_seed(3)
    signal = torch.arange(1, 5001, dtype=torch.float32)
    for _ in range(200):
        spread, padded = crops.sample_spread_crops(signal, 1000, 3, generator)
        starts = sorted(int(crop[0]) - 1 for crop in spread)
        assert padded == 0 and all(b - a >= 1000 for a, b in zip(starts, starts[1:]))
        assert all(torch.equal(crop, torch.arange(crop[0], crop[0] + 1000)) for crop in spread)
    # shorter than two crops: the largest equal gap the signal allows
    short = torch.arange(1, 1501, dtype=torch.float32)
    gaps = []
    for _ in range(50):
        spread, _ = crops.sample_spread_crops(short, 1000, 2, generator)
        gaps.append(abs(int(spread[0, 0]) - int(spread[1, 0])))
    assert min(gaps) == 500
    independent = [abs(int(c[0, 0]) - int(c[1, 0])) for c in (sample_crops(short, 1000, 2, generator)[0] for _ in range(50))]
    assert min(independent) < 500


def test_whole_utterance_window_reads_crops_from_everywhere(tmp_path):
    path = write_ramp(str(tmp_path / "long.wav"), 10.0)
    spec = MultiCropSpec(n_global=2, global_seconds=1.0, n_local=0, local_seconds=0.5, window_factor=None)
    torch.manual_seed(0)
    offsets = []
    for _ in range(40):
        global_crops, _, _ = run_pipeline(multicrop_pipeline(spec), path, 10.0, MULTICROP_KEYS)
        offsets += [assert_contiguous_in_file(crop, 10 * SAMPLE_RATE) for crop in global_crops]
    pair_spans = [abs(a - b) for a, b in zip(offsets[::2], offsets[1::2])]
    assert max(pair_spans) > 3 * SAMPLE_RATE  # a 3 s window (window_factor 3) could not do this
