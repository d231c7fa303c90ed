"""Pseudo-labelling on real speech: the data-driven clustering against the fixed settings.

    python -m bench.clustering_study --encoder NAME=PRETRAINED_DIR [--encoder ...] \
        [--pool speechocean|all] [--output bench/results/clustering_study.md]

For each exported encoder, the study pool (bench.study_data) is embedded once and clustered
three ways from the same embeddings: the fixed settings of ``hparams/pseudo_label.yaml`` before
release 0.2 (AHC at cosine 0.8, clusters of 8-50), the same with the PLDA second pass, and the
data-driven settings (``ahc_threshold: auto``, ``min_size: auto``). ``--pool speechocean`` keeps
the 83 speechocean762 speakers of the pool (10 utterances each: the part where clusters can form
and be measured); ``all`` clusters the whole pool (speakers with one utterance included). The
true speakers are read only to score the result: clusters against the true count, kept fraction,
purity, NMI and ARI (kept rows and all rows), for each true speaker the number of clusters it was
split into, and for each cluster the number of speakers it merged; a figure compares the
cluster-size histograms with the true one.
"""
from __future__ import annotations

import argparse
import datetime
import os
from dataclasses import replace
from typing import Dict, List, Sequence

import numpy as np

from bench.common import FIGURES, REPO, RESULTS, SHARED_DATA, command_line, machine
from bench.study import split_and_merge
from bench.study_data import prepare_study_data
from bench.study_figures import size_panels
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.embeddings import extract_embeddings
from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig
from speechbrain_dino.pseudo_labels.labelling import pseudo_label
from speechbrain_dino.pseudo_labels.metrics import cluster_metrics

FIXED = PseudoLabelConfig(ahc_threshold=0.8, min_size=8, max_size=50, member_quantile=0.2)
SETTINGS = {
    "fixed (0.8, 8-50)": FIXED,
    "fixed + PLDA pass": replace(FIXED, plda_second_pass=True),
    "data-driven (auto)": replace(FIXED, ahc_threshold="auto", min_size="auto"),
    "data-driven + PLDA pass": replace(FIXED, ahc_threshold="auto", min_size="auto", plda_second_pass=True),
}


def study_one(vectors: np.ndarray, truth: np.ndarray) -> Dict[str, Dict]:
    """Every setting of :data:`SETTINGS` on one encoder's embeddings."""
    results = {}
    for name, config in SETTINGS.items():
        try:
            result = pseudo_label(vectors, config, seed=0, true_labels=truth)
        except DataError as error:  # a setting may fail outright (e.g. PLDA on too few clusters)
            results[name] = {"error": str(error).splitlines()[0]}
            continue
        labels = result.labels
        report = result.report
        results[name] = {
            "clusters": report["clusters_after_filtering"],
            "kept": report["kept_fraction"],
            "kept_metrics": report["metrics"]["kept"],
            "all_rows": cluster_metrics(truth, np.where(labels >= 0, labels, -1 - np.arange(len(labels)))),
            "chosen": report["chosen_settings"],
            "sizes": np.bincount(labels[labels >= 0]).tolist(),
            **split_and_merge(truth, labels),
        }
    return results


def size_figure(all_results: Dict[str, Dict], truth: np.ndarray, path: str) -> str:
    """Cluster-size histograms of each encoder's settings (PLDA passes left out) against the true sizes."""
    panels = {
        encoder: {name: result["sizes"] for name, result in results.items() if "sizes" in result and "PLDA" not in name}
        for encoder, results in all_results.items()
    }
    return size_panels(panels, np.unique(truth, return_counts=True)[1], "true speakers", path)


def table(all_results: Dict[str, Dict], true_count: int) -> List[str]:
    """Markdown rows: encoder x setting."""
    lines = [
        f"| encoder | setting | clusters (true {true_count}) | kept % | purity | NMI kept | ARI kept | NMI all rows (dropped: alone) "
        "| clusters per speaker | speakers per cluster | chosen threshold, min size |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for encoder, results in all_results.items():
        for name, r in results.items():
            if "error" in r:
                lines.append(f"| {encoder} | {name} | failed: {r['error']} |||||||||")
                continue
            chosen = r["chosen"]
            lines.append(
                f"| {encoder} | {name} | {r['clusters']} | {100 * r['kept']:.0f} | {r['kept_metrics']['purity']:.3f} "
                f"| {r['kept_metrics']['nmi']:.3f} | {r['kept_metrics']['ari']:.3f} | {r['all_rows']['nmi']:.3f} "
                f"| {r['clusters_per_speaker']:.2f} | {r['speakers_per_cluster']:.2f} "
                f"| {float(chosen['ahc_threshold']['value']):.3f}, {chosen['min_size']['value']} |"
            )
    return lines


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", action="append", required=True, help="NAME=PRETRAINED_DIR")
    parser.add_argument("--pool", choices=("speechocean", "all"), default="speechocean")
    parser.add_argument("--work", default=os.path.join(REPO, "bench", "work", "clustering_study"))
    parser.add_argument("--output", default=os.path.join(RESULTS, "clustering_study.md"))
    args = parser.parse_args(argv)
    data = prepare_study_data(SHARED_DATA, os.path.join(args.work, "data"))
    rows = read_manifest(data.pretrain_csv)
    if args.pool == "speechocean":
        rows = [row for row in rows if row["spk_id"].startswith("so")]
    truth = np.array([row["spk_id"] for row in rows])
    all_results = {}
    for item in args.encoder:
        name, folder = item.split("=", 1)
        cache = os.path.join(args.work, f"{name}_{args.pool}.npz")
        vectors = extract_embeddings(folder, rows, cache_path=cache, progress=False).vectors
        all_results[name] = study_one(vectors, truth)
    figure = size_figure(all_results, truth, os.path.join(FIGURES, f"clustering_sizes_{args.pool}.png"))
    lines = [
        f"Command: `{command_line('clustering_study', argv)}`  ",
        f"Date: {datetime.date.today().isoformat()}; machine: {machine()}  ",
        f"Pool: {args.pool} ({len(rows)} utterances, {len(set(truth))} speakers); seed 0. "
        "True speakers used only for scoring.",
        "",
        *table(all_results, len(set(truth))),
        "",
        f"![cluster sizes]({os.path.relpath(figure, REPO)})",
    ]
    with open(args.output, "w", encoding="utf-8") as fout:
        fout.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
