"""Emotion recognition on the generated corpus: real signal is found, shuffled labels are not."""
import numpy as np
import torch

from speechbrain_dino.emotion.evaluation import evaluate_emotion
from speechbrain_dino.emotion.folds import assert_speaker_independent, speaker_independent_folds
from speechbrain_dino.inference.baselines import mfcc_statistics
from speechbrain_dino.synthetic.corpus import generate_corpus


def test_emotion_probe_on_synthetic_audio_beats_majority_and_shuffled_labels_do_not(tmp_path):
    torch.set_num_threads(1)
    rows = generate_corpus(tmp_path / "corpus", speakers=20, utterances=12, emotions=4, seed=5,
                           min_seconds=1.5, max_seconds=2.5)
    features = mfcc_statistics(rows)
    folds = speaker_independent_folds(rows, protocol="speaker_kfold", n_folds=5, seed=0)
    assert_speaker_independent(rows, folds)
    labels = [row["emotion"] for row in rows]
    speakers = [row["spk_id"] for row in rows]
    real = evaluate_emotion(features, labels, folds, speakers, seed=0).to_dict()
    # synthetic emotions live mostly in f0 and rate, which MFCC statistics see only weakly
    assert real["micro_f1"] > real["majority_rate"] + 8, (real["micro_f1"], real["majority_rate"])
    shuffled_scores = []
    for seed in range(3):
        shuffled = list(np.random.default_rng(seed).permutation(labels))
        shuffled_scores.append(evaluate_emotion(features, shuffled, folds, speakers, seed=0).to_dict()["micro_f1"])
    assert np.mean(shuffled_scores) < 100 / 4 + 5, shuffled_scores
