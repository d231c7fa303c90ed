"""Which recordings of a folder are the same speaker: embed every file, cluster without labels.

    sbdino-cluster my_audio/ --pretrained exp/round1/aam/pretrained --output_folder clusters/
    sbdino-cluster held_out.csv --pretrained ... --output_folder ...   # a manifest; with spk_id: NMI

(also ``python -m speechbrain_dino.inference.cluster``). Every file is embedded as ``sbdino-embed``
embeds it (:func:`speechbrain_dino.inference.embed.embed`) and the embeddings are clustered as the
pseudo-label stage clusters them (:func:`~speechbrain_dino.pseudo_labels.labelling.pseudo_label`
with the ``clustering`` settings of ``hparams/pseudo_label.yaml``, or of ``--hparams``): PCA,
k-means over-clustering, agglomeration stopping at the threshold chosen from the data
(:mod:`speechbrain_dino.pseudo_labels.thresholds`), reassignment, and the filters that mark the
least typical members. The stage's cap on cluster size (which subsamples a large cluster for
training) is lifted: one speaker's hundred files stay one cluster of a hundred.

Writes into ``--output_folder``:

- ``clusters.csv``: ``ID, wav, cluster`` (0 the largest), ``centre_distance`` (1 - cosine of the
  embedding to its cluster's mean direction), ``status`` (``kept``, or ``outlier``: a member the
  stage's filters drop, i.e. among the least typical of its cluster or in a cluster below the
  minimum size) and, from a manifest that has it, ``spk_id``;
- ``summary.json``: counts, cluster sizes, the clustering threshold and how it was chosen, the
  decision threshold estimated from the kept members' clusters
  (:func:`~speechbrain_dino.inference.threshold_estimate.cluster_threshold`, usable as
  ``SpeakerVerifier``'s ``threshold=``); with ``spk_id``: NMI / ARI / purity against it (all
  files, and kept ones) and, for comparison, the EER threshold of the true speakers' pairs (the
  same draw of up to 200 groups x 8 files, with speakers for clusters);
- ``embedding_map.png``: t-SNE of the embeddings coloured by cluster (and by ``spk_id``).

Bad input (a missing folder or model, a folder without audio, an unreadable file, a malformed
manifest) ends in one ``error: ...`` line, exit status 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import load_hparams
from speechbrain_dino.data.manifest import Row
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.inference.embed import audio_rows, embed
from speechbrain_dino.inference.embedding_map import plot_embedding_map
from speechbrain_dino.inference.embeddings import checked_pretrained_folder
from speechbrain_dino.inference.threshold_estimate import cluster_threshold
from speechbrain_dino.pseudo_labels.clustering import l2_normalize
from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig
from speechbrain_dino.pseudo_labels.labelling import PseudoLabels, pseudo_label
from speechbrain_dino.pseudo_labels.outputs import known_labels
from speechbrain_dino.pseudo_labels.refinement import member_scores

CLUSTERS_FILE = "clusters.csv"
SUMMARY_FILE = "summary.json"
MAP_FILE = "embedding_map.png"
DEFAULT_HPARAMS = "hparams/pseudo_label.yaml"
#: Cluster sizes listed on the console.
SHOWN_SIZES = 12


def stage_clustering(hparams_file: PathLike, values: Dict[str, Any]) -> PseudoLabelConfig:
    """The ``clustering`` settings of a pseudo-label YAML (its placeholders filled from ``values``:
    ``pretrained_path``, ``train_csv``, ``output_folder``), without the cap on cluster size."""
    _, _, hparams = load_hparams(hparams_file, dict(values))
    return replace(hparams["clustering"], max_size=None)


def by_size(clusters: np.ndarray) -> np.ndarray:
    """``[N]`` cluster ids renumbered so that 0 is the largest cluster (ties: the lower old id)."""
    sizes = np.bincount(clusters)
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[clusters]


def write_clusters(rows: Sequence[Row], clusters: np.ndarray, distances: np.ndarray, kept: np.ndarray,
                   truth: Optional[Sequence[str]], path: PathLike) -> None:
    """``clusters.csv`` (module docstring), one line per row in manifest order."""
    with open(os.fspath(path), "w", newline="", encoding="utf-8") as fout:
        writer = csv.writer(fout)
        writer.writerow(["ID", "wav", "cluster", "centre_distance", "status"] + (["spk_id"] if truth else []))
        for index, row in enumerate(rows):
            line = [row["ID"], row["wav"], int(clusters[index]), f"{distances[index]:.4f}",
                    "kept" if kept[index] else "outlier"]
            writer.writerow(line + ([truth[index]] if truth else []))


def summarise(result: PseudoLabels, clusters: np.ndarray, vectors: np.ndarray, rows: Sequence[Row],
              truth: Optional[Sequence[str]], seed: int) -> Dict[str, Any]:
    """The ``summary.json`` of a clustering (module docstring)."""
    kept = result.labels >= 0
    summary: Dict[str, Any] = {
        "files": len(rows),
        "clusters": int(clusters.max()) + 1,
        "cluster_sizes": np.bincount(clusters).tolist(),
        "outliers": int((~kept).sum()),
        "clusters_with_kept_members": int(result.report["clusters_after_filtering"]),
        "clustering_threshold": result.report["chosen_settings"]["ahc_threshold"],
        "min_size": result.report["chosen_settings"]["min_size"],
    }
    try:
        estimate = cluster_threshold(vectors[kept], clusters[kept].astype(str), seed)
        summary["decision_threshold_estimate"] = {"value": estimate.value, **estimate.details()}
    except DataError:
        summary["decision_threshold_estimate"] = {
            "value": None,
            "why_none": "the kept members need two or more clusters, one of them with two or more members",
        }
    if truth:
        metrics = result.report["metrics"]
        against = {"all_files": metrics["before_filtering"], "kept": metrics["kept"]}
        try:  # the same pair draw and EER point, with the true speakers for clusters
            reference = cluster_threshold(vectors, truth, seed)
            against["eer_threshold"] = {"value": reference.value, **reference.details()}
        except DataError as error:  # one speaker, or one file per speaker
            against["eer_threshold"] = {"value": None, "why_none": error.message}
        summary["against_spk_id"] = against
    return summary


def summary_lines(summary: Dict[str, Any]) -> List[str]:
    """The console's account of ``summary.json``."""
    sizes = summary["cluster_sizes"]
    shown = ", ".join(str(size) for size in sizes[:SHOWN_SIZES]) + (", ..." if len(sizes) > SHOWN_SIZES else "")
    threshold = summary["clustering_threshold"]
    lines = [
        f"{summary['files']} files -> {summary['clusters']} clusters (sizes {shown}), {summary['outliers']} outliers; "
        f"clustering threshold {threshold['value']:.3f} ({threshold['chosen_by']})",
    ]
    estimate = summary["decision_threshold_estimate"]
    if estimate["value"] is not None:
        lines.append(
            f"decision threshold estimated from the clusters: {estimate['value']:.4f} (EER point of {estimate['target_trials']} "
            f"same- and {estimate['nontarget_trials']} different-cluster pairs; SpeakerVerifier's threshold=)"
        )
    against = summary.get("against_spk_id")
    if against:
        every = against["all_files"]
        line = f"against spk_id: NMI {every['nmi']:.3f}, ARI {every['ari']:.3f}, purity {every['purity']:.3f} (all files)"
        if against.get("eer_threshold", {}).get("value") is not None:
            line += f"; the true speakers' EER threshold {against['eer_threshold']['value']:.4f}"
        lines.append(line)
    return lines


def cluster_folder(source: PathLike, pretrained: PathLike, output_folder: PathLike,
                   hparams_file: PathLike = DEFAULT_HPARAMS, device: str = "cpu", seed: int = 0) -> Dict[str, Any]:
    """Clusters the audio files of ``source`` (a folder or a manifest CSV) with the encoder
    ``pretrained`` and writes the outputs of the module docstring into ``output_folder``.

    Returns
    -------
    dict
        The summary (also written as ``summary.json``).
    """
    folder = checked_pretrained_folder(pretrained)
    rows = audio_rows(source)
    if len(rows) < 2:
        raise DataError("clustering needs at least two audio files", source)
    config = stage_clustering(hparams_file, {"pretrained_path": folder, "train_csv": os.fspath(source),
                                             "output_folder": os.fspath(output_folder)})
    truth = known_labels(rows)
    vectors = embed(folder, rows, device)
    result = pseudo_label(vectors, config, seed=seed, true_labels=truth)
    clusters = by_size(result.clusters)
    distances = 1.0 - member_scores(l2_normalize(vectors), clusters)
    os.makedirs(os.fspath(output_folder), exist_ok=True)
    write_clusters(rows, clusters, distances, result.labels >= 0, truth, os.path.join(output_folder, CLUSTERS_FILE))
    summary = summarise(result, clusters, vectors, rows, truth, seed)
    with open(os.path.join(output_folder, SUMMARY_FILE), "w", encoding="utf-8") as fout:
        json.dump(summary, fout, indent=2)
    labellings = {"clusters": clusters, **({"spk_id": truth} if truth else {})}
    plot_embedding_map(vectors, labellings, os.path.join(output_folder, MAP_FILE), seed)
    return summary


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line (module docstring)."""
    parser = argparse.ArgumentParser(
        prog="sbdino-cluster", description="Group the audio files of a folder (or manifest) by speaker, without labels."
    )
    parser.add_argument("source", metavar="FOLDER_OR_MANIFEST", help="a folder of audio files or a manifest CSV")
    parser.add_argument("--pretrained", required=True, help="an exported pretrained/ folder")
    parser.add_argument("--output_folder", default="clusters", help="where clusters.csv, summary.json and the map go")
    parser.add_argument("--hparams", default=DEFAULT_HPARAMS, help="the pseudo-label YAML whose clustering settings apply")
    parser.add_argument("--device", default="cpu", help="e.g. cuda:0")
    parser.add_argument("--seed", type=int, default=0, help="seed of k-means and of the threshold's pair draw")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point (``sbdino-cluster``)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)

    @clean_exit
    def run() -> None:
        summary = cluster_folder(args.source, args.pretrained, args.output_folder, args.hparams, args.device, args.seed)
        for line in summary_lines(summary):
            print(line)
        print(f"outputs in {args.output_folder}: {CLUSTERS_FILE}, {SUMMARY_FILE}, {MAP_FILE}")

    run()


if __name__ == "__main__":
    main()
