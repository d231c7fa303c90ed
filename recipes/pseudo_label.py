#!/usr/bin/env python3
"""Pseudo speaker labels for an unlabelled corpus: embed, cluster, refine, filter.

    python recipes/pseudo_label.py hparams/pseudo_label.yaml --pretrained_path=exp/dino/pretrained \
        --train_csv=train.csv --output_folder=exp/round1/labels

Writes ``pseudo_labels.csv`` (the manifest format, ``spk_id`` = cluster id, rows dropped by the
filters absent, any original label kept as ``true_spk_id``) and ``report.json`` (clusters, kept
fraction, sizes, and NMI / ARI / purity against the original labels when the manifest had them;
those labels are only reported, never used). Skips the work when both files exist.
"""
import json
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from speechbrain_dino.embeddings import extract_embeddings
from speechbrain_dino.errors import DataError
from speechbrain_dino.manifest import read_manifest, write_manifest
from speechbrain_dino.pseudo_labels.labelling import pseudo_label
from speechbrain_dino.pseudo_labels.outputs import relabel_rows
from speechbrain_dino.recipe_utils import exit_on_data_error, load_recipe


@exit_on_data_error
def main(argv):
    """Embeds the training manifest, clusters it, writes pseudo-labels and the report."""
    hparams_file, run_opts, overrides, hparams = load_recipe(argv, required=("pretrained_path", "train_csv"))
    output = hparams["output_folder"]
    labels_csv, report_json = os.path.join(output, "pseudo_labels.csv"), os.path.join(output, "report.json")
    if os.path.isfile(labels_csv) and os.path.isfile(report_json):
        print(f"pseudo-labels | already done: {labels_csv}")
        return
    sb.create_experiment_directory(
        experiment_directory=output, hyperparams_to_save=hparams_file, overrides=overrides
    )
    rows = read_manifest(hparams["train_csv"], required=("ID", "duration", "wav"))
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
    run_on_main(cluster_and_write, args=[hparams, rows, table, labels_csv, report_json])


def cluster_and_write(hparams, rows, table, labels_csv, report_json):
    """Clusters the embeddings and writes the pseudo-labelled manifest and the report (main process)."""
    # reported only: a manifest pseudo-labelled earlier keeps the original labels in true_spk_id
    label_column = "true_spk_id" if "true_spk_id" in rows[0] else "spk_id"
    true_labels = [row.get(label_column, "") for row in rows]
    known = all(true_labels)
    result = pseudo_label(
        table.vectors, hparams["clustering"], seed=hparams["seed"], true_labels=true_labels if known else None
    )
    if result.report["clusters_after_filtering"] < 2:
        raise DataError(
            f"the filters kept {result.report['clusters_after_filtering']} cluster(s) "
            f"({result.report['kept']} utterances): nothing to train a speaker classifier on; raise "
            "clustering.ahc_threshold (more, smaller clusters), lower clustering.min_size, or filter less",
            hparams["train_csv"],
        )
    write_manifest(relabel_rows(rows, table.ids, result.labels), labels_csv)
    with open(report_json, "w", encoding="utf-8") as fout:
        json.dump(result.report, fout, indent=2)
    report = result.report
    line = (
        f"pseudo-labels | {report['clusters_after_filtering']} clusters, kept {report['kept']} of {len(rows)} "
        f"utterances ({100 * report['kept_fraction']:.1f}%)"
    )
    kept = report.get("metrics", {}).get("kept")
    if kept:
        line += f" | NMI {kept['nmi']:.3f} ARI {kept['ari']:.3f} purity {kept['purity']:.3f} (kept rows)"
    print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
