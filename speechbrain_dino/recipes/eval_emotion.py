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
import sys

import speechbrain as sb

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import data_replacements, load_recipe
from speechbrain_dino.config.recipe_settings import EVAL_EMOTION, EVAL_EMOTION_KEYS
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.emotion.evaluation import evaluate_emotion
from speechbrain_dino.emotion.folds import assert_speaker_independent, speaker_independent_folds
from speechbrain_dino.emotion.outputs import write_outputs
from speechbrain_dino.inference.baselines import checked_baselines, system_embeddings
from speechbrain_dino.inference.embeddings import extraction_options
from speechbrain_dino.training.run_lock import output_folder_lock


@clean_exit
def main(argv):
    """Builds the folds, evaluates the encoder and the baselines, writes the results; holds
    ``<output_folder>/run.lock`` meanwhile (one run per folder)."""
    hparams_file, run_opts, overrides, hparams = load_recipe(
        argv,
        required=("pretrained_path", "data_csv"),
        usage=__doc__,
        default_hparams="hparams/emotion.yaml",
        settings=EVAL_EMOTION, reads=EVAL_EMOTION_KEYS,
    )
    with output_folder_lock(hparams["output_folder"]):
        evaluate(hparams_file, run_opts, overrides, hparams)


def evaluate(hparams_file, run_opts, overrides, hparams):
    """Evaluates the encoder and the baselines on the folds; writes the results into ``output_folder``."""
    sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    rows = read_manifest(
        hparams["data_csv"], required=("ID", "duration", "wav", "spk_id", "emotion"),
        replacements=data_replacements(hparams),
    )
    folds = speaker_independent_folds(
        rows, protocol=hparams["protocol"], n_folds=hparams["folds"], seed=hparams["seed"],
        drop_unlabelled=hparams["drop_unlabelled"],
    )
    assert_speaker_independent(rows, folds)
    labels = [row["emotion"] for row in rows]
    speakers = [row["spk_id"] for row in rows]
    results = {}
    for name in [hparams["system_name"], *checked_baselines(hparams["baselines"], hparams["pretrained_path"])]:
        table = system_embeddings(
            name, hparams["pretrained_path"], rows, hparams["output_folder"], "embeddings",
            extraction_options(hparams, run_opts), seed=hparams["seed"],
        )
        results[name] = evaluate_emotion(
            table.vectors, labels, folds, speakers, classifier=hparams["classifier"],
            inner_folds=hparams["inner_folds"], seed=hparams["seed"],
        )
        print(f"emotion | {name} | {results[name].summary()}")
    write_outputs(results, hparams["output_folder"], main=hparams["system_name"])


if __name__ == "__main__":
    main(sys.argv[1:])
