#!/usr/bin/env python3
"""Pseudo speaker labels for an unlabelled corpus: embed, cluster, refine, filter.

    python recipes/pseudo_label.py hparams/pseudo_label.yaml --pretrained_path=exp/dino/pretrained \
        --train_csv=train.csv --output_folder=exp/round1/labels

Writes ``pseudo_labels.csv`` (the manifest format, ``spk_id`` = cluster id, rows dropped by the
filters absent, any original label kept as ``true_spk_id``) and ``report.json`` (clusters, kept
fraction, sizes, and NMI / ARI / purity against the original labels when the manifest had them;
those labels are only reported, never used). Skips the work when both files exist.
"""
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import data_replacements, load_recipe
from speechbrain_dino.config.recipe_settings import PSEUDO_LABEL, PSEUDO_LABEL_KEYS
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.inference.embeddings import extract_embeddings
from speechbrain_dino.pseudo_labels.labelling import pseudo_label
from speechbrain_dino.pseudo_labels.outputs import (
    check_trainable,
    known_labels,
    labels_path,
    outputs_exist,
    summary_line,
    write_outputs,
)
from speechbrain_dino.training.run_lock import output_folder_lock


@clean_exit
def main(argv):
    """Embeds the training manifest, clusters it, writes pseudo-labels and the report; holds
    ``<output_folder>/run.lock`` meanwhile (one run per folder)."""
    hparams_file, run_opts, overrides, hparams = load_recipe(
        argv,
        required=("pretrained_path", "train_csv"),
        usage=__doc__,
        default_hparams="hparams/pseudo_label.yaml",
        settings=PSEUDO_LABEL, reads=PSEUDO_LABEL_KEYS,
    )
    with output_folder_lock(hparams["output_folder"]):
        label_corpus(hparams_file, run_opts, overrides, hparams)


def label_corpus(hparams_file, run_opts, overrides, hparams):
    """Embeds and clusters the corpus into ``output_folder`` unless its labels exist already."""
    output = hparams["output_folder"]
    if outputs_exist(output):
        print(f"pseudo-labels | already done: {labels_path(output)}")
        return
    sb.create_experiment_directory(output, hyperparams_to_save=hparams_file, overrides=overrides)
    rows = read_manifest(hparams["train_csv"], required=("ID", "duration", "wav"), replacements=data_replacements(hparams))
    table = extract_embeddings(
        hparams["pretrained_path"],
        rows,
        cache_path=os.path.join(output, "train_embeddings.npz"),
        device=run_opts.get("device", "cpu"),
        sample_rate=hparams["sample_rate"],
        resample=hparams["resample"],
        max_batch_seconds=hparams["max_batch_seconds"],
        max_seconds=hparams["max_seconds"],
        seed=hparams["seed"],
        num_workers=hparams["num_workers"],
    )
    run_on_main(cluster_and_write, args=[hparams, rows, table])


def cluster_and_write(hparams, rows, table):
    """Clusters the embeddings, writes the pseudo-labelled manifest and the report (main process)."""
    result = pseudo_label(table.vectors, hparams["clustering"], seed=hparams["seed"], true_labels=known_labels(rows))
    check_trainable(result, hparams["train_csv"])
    write_outputs(rows, table.ids, result, hparams["output_folder"])
    print(summary_line(result.report, len(rows)))


if __name__ == "__main__":
    main(sys.argv[1:])
