"""DINO learns speaker information without labels: a short CPU run on the synthetic corpus.

Loss falls, no collapse is reported, and the teacher's embedding separates held-out speakers
better than the same architecture untrained (EER on all cross-emotion pairs of held-out speakers).
"""
import importlib.util
import os
import re

import numpy as np
import torch

from speechbrain_dino.embeddings import extract_embeddings
from speechbrain_dino.export import export_random_init
from speechbrain_dino.manifest import write_manifest
from speechbrain_dino.scoring import cosine_scores
from speechbrain_dino.synthetic import generate_corpus
from speechbrain_dino.trial_generation import generate_trials
from speechbrain_dino.verification_metrics import verification_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = [
    "--encoder_kwargs={channels: [64, 64, 64, 64, 192], attention_channels: 32, se_channels: 32, lin_neurons: 96}",
    "--embedding_dim=96",
    "--n_prototypes=256",
    "--head_kwargs={hidden_size: 256, bottleneck_size: 64}",
    "--crops={global_seconds: 1.5, local_seconds: 0.75}",
    "--batch_size=16",
    "--number_of_epochs=10",
    "--noprogressbar",
]


def eer(pretrained, rows, trials):
    vectors = extract_embeddings(pretrained, rows, progress=False).vectors
    return verification_metrics(cosine_scores(vectors, trials.enrol, trials.test), trials.labels)["EER"]


def test_dino_beats_random_init_on_held_out_speakers(tmp_path):
    torch.set_num_threads(1)
    rows = generate_corpus(tmp_path / "corpus", speakers=24, utterances=8, emotions=2, seed=3,
                           min_seconds=2.0, max_seconds=3.0)
    train = [row for row in rows if int(row["spk_id"][3:]) < 16]
    held_out = [row for row in rows if int(row["spk_id"][3:]) >= 16]
    write_manifest(train, tmp_path / "train.csv")
    spec = importlib.util.spec_from_file_location("train_dino", os.path.join(REPO, "recipes", "train_dino.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.main([os.path.join(REPO, "hparams", "demo", "dino_ecapa.yaml"), f"--train_csv={tmp_path / 'train.csv'}",
                 f"--output_folder={tmp_path / 'dino'}", *SMALL])

    log = (tmp_path / "dino" / "train_log.txt").read_text()
    losses = [float(value) for value in re.findall(r"train loss: ([0-9.]+)", log)]
    assert len(losses) == 10
    assert np.mean(losses[-3:]) < losses[0] - 0.3, losses
    assert "WARNING" not in log, log
    entropy = [float(v) for v in re.findall(r"train teacher_entropy: ([0-9.]+)", log)]
    assert entropy[-1] < 0.9 * np.log(256)

    trials = generate_trials(held_out, cross=["emotion"])
    trained = eer(tmp_path / "dino" / "pretrained", held_out, trials)
    untrained = [
        eer(export_random_init(tmp_path / "dino" / "pretrained", tmp_path / f"random{seed}", seed=seed), held_out, trials)
        for seed in (0, 1)
    ]
    assert trained < min(untrained) - 2.0, (trained, untrained)
