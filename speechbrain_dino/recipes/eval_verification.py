#!/usr/bin/env python3
"""Speaker verification with any encoder folder: cosine scoring, AS-norm, EER / minDCF, DET plot.

    python recipes/eval_verification.py hparams/verification.yaml --pretrained_path=exp/dino/pretrained \
        --test_csv=vox1_test.csv --trials=veri_test2.txt [--cohort_csv=train.csv] --output_folder=exp/eval

Works with our ``pretrained/`` folders and with SpeechBrain's own speaker models (any folder
``EncoderClassifier.from_hparams`` loads). Writes ``results.json`` (``EER`` in percent,
``minDCF_0.01``, ``minDCF_0.05``, ``n_trials``; normalised metrics under ``as_norm``), per-trial
score files and ``det.png`` (all systems), and prints one results line per system. Baselines named
in ``baselines`` (``mfcc_stats``, ``random_init``) are scored on the same trials. When every test
row has a ``spk_id``, each EER also gets ``EER_interval_95``: its 95% interval over
``bootstrap_draws`` resamplings of the test speakers (the same draws for every system, so two
systems can be compared draw by draw; ``bench/significance.py`` does).
"""
import sys

import speechbrain as sb

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import data_replacements, load_recipe
from speechbrain_dino.config.recipe_settings import EVAL_VERIFICATION, EVAL_VERIFICATION_KEYS
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.inference.baselines import checked_baselines, system_embeddings
from speechbrain_dino.inference.embeddings import extraction_options
from speechbrain_dino.training.run_lock import output_folder_lock
from speechbrain_dino.verification.evaluation import (
    cohort_means,
    manifest_speakers,
    read_cohort,
    results_line,
    verify,
    write_outputs,
)
from speechbrain_dino.verification.trials import read_trials


@clean_exit
def main(argv):
    """Embeds the test (and cohort) manifests, scores the trials, writes the results; holds
    ``<output_folder>/run.lock`` meanwhile (one run per folder)."""
    hparams_file, run_opts, overrides, hparams = load_recipe(
        argv,
        required=("pretrained_path", "test_csv", "trials"),
        usage=__doc__,
        default_hparams="hparams/verification.yaml",
        settings=EVAL_VERIFICATION, reads=EVAL_VERIFICATION_KEYS,
    )
    with output_folder_lock(hparams["output_folder"]):
        evaluate(hparams_file, run_opts, overrides, hparams)


def evaluate(hparams_file, run_opts, overrides, hparams):
    """Scores the trials with the encoder and the baselines; writes the results into ``output_folder``."""
    sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    replacements = data_replacements(hparams)
    test_rows = read_manifest(hparams["test_csv"], required=("ID", "duration", "wav"), replacements=replacements)
    trials = read_trials(hparams["trials"], [row["ID"] for row in test_rows])  # checked before any embedding
    cohort_rows = None
    if hparams.get("cohort_csv"):
        cohort_rows = read_cohort(hparams["cohort_csv"], hparams["as_norm_top_n"], replacements)
    speakers = manifest_speakers(test_rows)
    options = extraction_options(hparams, run_opts)
    results = {}
    for name in [hparams["system_name"], *checked_baselines(hparams["baselines"], hparams["pretrained_path"])]:
        def embed(rows, cache_name):
            return system_embeddings(
                name, hparams["pretrained_path"], rows, hparams["output_folder"], cache_name,
                options, seed=hparams["seed"],
            )

        cohort = None if cohort_rows is None else cohort_means(embed(cohort_rows, "cohort"), cohort_rows)
        results[name] = verify(embed(test_rows, "test"), trials, cohort, hparams["as_norm_top_n"],
                               speakers, hparams["bootstrap_draws"])
        print(f"verification | {name} | {results_line(results[name])}")
    write_outputs(results, hparams["output_folder"], main=hparams["system_name"])


if __name__ == "__main__":
    main(sys.argv[1:])
