#!/usr/bin/env python3
"""Speaker verification with any encoder folder: cosine scoring, AS-norm, EER / minDCF, DET plot.

    python recipes/eval_verification.py hparams/verification.yaml --pretrained_path=exp/dino/pretrained \
        --test_csv=vox1_test.csv --trials=veri_test2.txt [--cohort_csv=train.csv] --output_folder=exp/eval

Works with our ``pretrained/`` folders and with SpeechBrain's own speaker models (any folder
``EncoderClassifier.from_hparams`` loads). Writes ``results.json`` (``EER`` in percent,
``minDCF_0.01``, ``minDCF_0.05``, ``n_trials``; normalised metrics under ``as_norm``), per-trial
score files and ``det.png``, and prints one results line.
"""
import os
import sys

import speechbrain as sb

from speechbrain_dino.embeddings import extract_embeddings
from speechbrain_dino.manifest import read_manifest
from speechbrain_dino.recipe_utils import exit_on_data_error, load_recipe
from speechbrain_dino.scoring import speaker_means
from speechbrain_dino.verification import results_line, verify, write_outputs


def embed(hparams, run_opts, csv_path, cache_name, required):
    """(rows, EmbeddingTable) of a manifest, cached in the output folder."""
    rows = read_manifest(csv_path, required=required)
    table = extract_embeddings(
        hparams["pretrained_path"],
        rows,
        cache_path=os.path.join(hparams["output_folder"], cache_name),
        device=run_opts.get("device", "cpu"),
        sample_rate=hparams["sample_rate"],
        resample=hparams["resample"],
        max_batch_seconds=hparams["max_batch_seconds"],
        chunk_seconds=hparams["chunk_seconds"],
        num_workers=hparams["num_workers"],
    )
    return rows, table


@exit_on_data_error
def main(argv):
    """Embeds the test (and cohort) manifests, scores the trials, writes the results."""
    hparams_file, run_opts, overrides, hparams = load_recipe(
        argv, required=("pretrained_path", "test_csv", "trials")
    )
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    _, table = embed(hparams, run_opts, hparams["test_csv"], "test_embeddings.npz", ("ID", "duration", "wav"))
    cohort = None
    if hparams.get("cohort_csv"):
        rows, cohort_table = embed(
            hparams, run_opts, hparams["cohort_csv"], "cohort_embeddings.npz", ("ID", "duration", "wav", "spk_id")
        )
        cohort, _ = speaker_means(cohort_table.vectors, [row["spk_id"] for row in rows])
    result = verify(table, hparams["trials"], cohort=cohort, top_n=hparams["as_norm_top_n"])
    write_outputs(result, hparams["output_folder"], system=hparams["system_name"])
    print(f"verification | {hparams['system_name']} | {results_line(result)}")


if __name__ == "__main__":
    main(sys.argv[1:])
