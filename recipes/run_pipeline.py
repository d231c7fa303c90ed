#!/usr/bin/env python3
"""The whole method in one command: DINO -> rounds of (pseudo-labels -> AAM) -> evaluations.

    python recipes/run_pipeline.py hparams/demo/pipeline.yaml --output_folder=results/demo
    python recipes/run_pipeline.py hparams/pipeline.yaml --output_folder=exp/vox \
        --train_csv=vox2_dev.csv --test_csv=vox1_test.csv --trials=veri_test2.txt --cohort_csv=...

With the demo YAML it first generates the synthetic corpus and splits it by speaker: training
speakers for pretraining and pseudo-labelling (labels never used), held-out speakers for the
verification trials and the emotion folds. Each stage runs in its own subfolder; rerunning skips
finished stages and resumes an interrupted one. Prints the results table at the end and writes it
to ``results.md`` / ``results.json``.
"""
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from speechbrain_dino.manifest import write_manifest
from speechbrain_dino.pipeline import Pipeline
from speechbrain_dino.recipe_utils import exit_on_data_error, load_recipe
from speechbrain_dino.synthetic.corpus import generate_corpus
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import write_trials


def prepare_synthetic_data(hparams):
    """Generates the synthetic corpus; writes train.csv, test.csv (held-out speakers), trials.txt.

    train.csv keeps its speaker labels only so that pseudo-labelling can report NMI / purity:
    DINO's data pipeline reads ``wav`` and ``duration`` alone, and the AAM rounds train on the
    cluster ids the pseudo-labelling writes.
    """
    data = os.path.join(hparams["output_folder"], "data")
    options = hparams["synthetic"]
    rows = generate_corpus(os.path.join(data, "corpus"), **options)
    speakers = sorted({row["spk_id"] for row in rows})
    held_out = set(speakers[-hparams["heldout_speakers"]:])
    train = [row for row in rows if row["spk_id"] not in held_out]
    test = [row for row in rows if row["spk_id"] in held_out]
    write_manifest(train, os.path.join(data, "train.csv"))
    write_manifest(test, os.path.join(data, "test.csv"))
    trials = generate_trials(test, seed=hparams["seed"], cross=hparams["trials_cross"])
    write_trials(trials, os.path.join(data, "trials.txt"))


@exit_on_data_error
def main(argv):
    """Prepares the data (demo), runs every stage, prints the table."""
    hparams_file, run_opts, overrides, hparams = load_recipe(argv)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    if hparams.get("synthetic"):
        run_on_main(prepare_synthetic_data, kwargs={"hparams": hparams})
    table = Pipeline(hparams).run()
    print("\nResults (" + os.path.join(hparams["output_folder"], "results.md") + ")\n")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
