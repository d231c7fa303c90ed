#!/usr/bin/env python3
"""Emotion recognition from frozen utterance embeddings, speaker-independent folds.

    python recipes/eval_emotion.py hparams/emotion.yaml --pretrained_path=exp/dino/pretrained \
        --data_csv=iemocap.csv [--protocol=iemocap --folds=5] --output_folder=exp/emotion

A probe (logistic regression or a small MLP, ``classifier`` in the YAML) is trained on the embeddings
of each training fold and scored on the held-out speakers. Baselines named in ``baselines``
(``mfcc_stats``: MFCC mean+std; ``random_init``: the same encoder untrained) go through the
same folds. Writes ``results.json`` (``micro_f1`` in percent, mean over folds, per-fold values,
``macro_f1``, ``ua``; baselines under ``baselines``), a confusion-matrix PNG per system, and prints
one results line per system.
"""
import json
import os
import sys

import speechbrain as sb

from speechbrain_dino.emotion import evaluate_emotion, plot_confusion
from speechbrain_dino.folds import assert_speaker_independent, speaker_independent_folds
from speechbrain_dino.manifest import read_manifest
from speechbrain_dino.recipe_utils import exit_on_data_error, extraction_options, load_recipe
from speechbrain_dino.systems import checked_baselines, system_embeddings


@exit_on_data_error
def main(argv):
    """Builds the folds, evaluates the encoder and the baselines, writes the results."""
    hparams_file, run_opts, overrides, hparams = load_recipe(argv, required=("pretrained_path", "data_csv"))
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    rows = read_manifest(hparams["data_csv"], required=("ID", "duration", "wav", "spk_id", "emotion"))
    folds = speaker_independent_folds(
        rows, protocol=hparams["protocol"], n_folds=hparams["folds"], seed=hparams["seed"],
        drop_unlabelled=hparams["drop_unlabelled"],
    )
    assert_speaker_independent(rows, folds)
    labels = [row["emotion"] for row in rows]
    speakers = [row["spk_id"] for row in rows]
    summary = {}
    for name in [hparams["system_name"], *checked_baselines(hparams["baselines"], hparams["pretrained_path"])]:
        table = system_embeddings(
            name, hparams["pretrained_path"], rows, hparams["output_folder"], "embeddings",
            extraction_options(hparams, run_opts), seed=hparams["seed"],
        )
        results = evaluate_emotion(
            table.vectors, labels, folds, speakers, classifier=hparams["classifier"], seed=hparams["seed"]
        )
        plot_confusion(results, os.path.join(hparams["output_folder"], f"confusion_{name}.png"))
        summary[name] = results.to_dict()
        print(f"emotion | {name} | {results.summary()}")
    output = dict(summary.pop(hparams["system_name"]))
    output["baselines"] = summary
    with open(os.path.join(hparams["output_folder"], "results.json"), "w", encoding="utf-8") as fout:
        json.dump(output, fout, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
