"""MFCC mean+std baseline: exact statistics, every input form, its EER on the synthetic corpus."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.lobes.features import MFCC
from speechbrain.utils.metric_stats import EER

from speechbrain_dino.data.manifest import write_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.baselines import mfcc_statistics
from speechbrain_dino.synthetic.corpus import generate_corpus
from speechbrain_dino.synthetic.synthesis import synthesize_utterance

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def waveforms():
    """Four utterances of different lengths."""
    return [synthesize_utterance(0, speaker, 0, "neutral", length)
            for speaker, length in enumerate([16000, 24000, 20000, 33333])]


def test_statistics_are_mfcc_mean_and_std_per_utterance(waveforms):
    embeddings = mfcc_statistics(waveforms, n_mfcc=13, batch_size=3)
    assert embeddings.shape == (4, 26) and embeddings.dtype == np.float32
    mfcc = MFCC(deltas=False, context=False, n_mfcc=13)
    for waveform, embedding in zip(waveforms, embeddings):
        with torch.no_grad():
            frames = mfcc(torch.from_numpy(waveform)[None])[0]  # [T, 13], no padding
        expected = torch.cat([frames.mean(0), frames.std(0, unbiased=False)]).numpy()
        np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-4)


def test_every_input_form_gives_the_same_rows(tmp_path, waveforms):
    rows = []
    for index, waveform in enumerate(waveforms):
        path = str(tmp_path / f"u{index}.wav")
        sf.write(path, waveform, SAMPLE_RATE, subtype="FLOAT")
        duration = len(waveform) / SAMPLE_RATE
        rows.append({"ID": f"u{index}", "duration": duration, "wav": path, "spk_id": ""})
    write_manifest(rows, tmp_path / "manifest.csv")
    reference = mfcc_statistics(waveforms, batch_size=2)
    for sources in (rows, [row["wav"] for row in rows], tmp_path / "manifest.csv",
                    [torch.from_numpy(waveform) for waveform in waveforms]):
        np.testing.assert_allclose(mfcc_statistics(sources, batch_size=2), reference, atol=1e-4)


def test_standardize_is_a_zscore_over_the_set(waveforms):
    raw = mfcc_statistics(waveforms)
    standardized = mfcc_statistics(waveforms, standardize=True)
    np.testing.assert_allclose(standardized, (raw - raw.mean(0)) / raw.std(0), atol=1e-4)


@pytest.mark.parametrize("bad", [[], [np.zeros((2, 100))], [np.zeros(0)]])
def test_bad_inputs_are_data_errors(bad):
    with pytest.raises(DataError):
        mfcc_statistics(bad)


def test_baseline_eer_on_the_synthetic_corpus_is_moderate(tmp_path):
    """Calibration: speakers are separable but far from trivially (a learned encoder has room)."""
    rows = generate_corpus(tmp_path, speakers=20, utterances=8, emotions=4, seed=1,
                           min_seconds=2.0, max_seconds=4.0)
    embeddings = mfcc_statistics(tmp_path / "manifest.csv", standardize=True)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    first, second = np.triu_indices(len(rows), k=1)
    scores = torch.from_numpy(np.sum(embeddings[first] * embeddings[second], axis=1))
    speakers = np.array([row["spk_id"] for row in rows])
    emotions = np.array([row["emotion"] for row in rows])
    target = torch.from_numpy(speakers[first] == speakers[second])
    same_emotion = torch.from_numpy(emotions[first] == emotions[second])
    eer, _ = EER(scores[target], scores[~target])
    eer_same_emotion, _ = EER(scores[target & same_emotion], scores[~target])
    eer_cross_emotion, _ = EER(scores[target & ~same_emotion], scores[~target])
    assert 0.15 < eer < 0.40
    # Emotion changes the voice independently of the speaker: crossing it makes trials harder.
    assert eer_same_emotion < eer < eer_cross_emotion
