"""Dataset construction and length-sorted extraction batches."""
import pytest

from speechbrain_dino.data.crops import random_crop_pipeline
from speechbrain_dino.data.dataio import DurationBatchSampler, dataset_from_manifest
from speechbrain_dino.errors import DataError


def test_duration_batches_bound_padded_seconds_and_cover_everything():
    durations = [1.0, 9.5, 3.0, 3.1, 2.0, 30.0, 0.5, 2.9]
    sampler = DurationBatchSampler(durations, max_batch_seconds=10.0)
    batches = list(sampler)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(len(durations)))
    for batch in batches:
        longest = max(durations[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 10.0
    # longest first, each batch sorted by decreasing duration
    assert batches[0] == [5]
    firsts = [durations[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    assert len(list(DurationBatchSampler(durations, 10.0, max_batch_size=2))[-1]) <= 2


def test_dataset_from_manifest_reads_audio(tmp_path, tone_writer):
    wav = tone_writer(str(tmp_path / "a.wav"), seconds=0.5)
    (tmp_path / "m.csv").write_text(f"ID,duration,wav,spk_id\nu1,0.5,{wav},s1\n")
    dataset = dataset_from_manifest(tmp_path / "m.csv")
    dataset.add_dynamic_item(random_crop_pipeline(0.5))
    dataset.set_output_keys(["id", "sig", "spk_id", "duration"])
    item = dataset[0]
    assert item["id"] == "u1" and item["spk_id"] == "s1" and item["duration"] == 0.5
    assert item["sig"].shape == (8000,)


def test_missing_audio_is_named_when_read(tmp_path):
    (tmp_path / "m.csv").write_text(f"ID,duration,wav,spk_id\nu1,0.5,{tmp_path}/gone.wav,\n")
    dataset = dataset_from_manifest(tmp_path / "m.csv")
    dataset.add_dynamic_item(random_crop_pipeline(0.5))
    dataset.set_output_keys(["sig"])
    with pytest.raises(DataError, match="gone.wav: audio file not found"):
        dataset[0]


def test_length_ratio_bounds_padding():
    durations = [2.0, 1.95, 1.5, 1.45, 1.0]
    batches = list(DurationBatchSampler(durations, max_batch_seconds=100.0, min_length_ratio=0.9))
    assert batches == [[0, 1], [2, 3], [4]]
