"""Pseudo-label rounds on real speech, round by round, with the round gate and the AAM budget.

    python -m bench.rounds_study --init NAME=PRETRAINED_DIR [--rounds 2] [--output_folder DIR]

Starting from an exported label-free encoder (e.g. the best of bench.objectives), each round
runs what the pipeline runs (``speechbrain_dino.pipeline.rounds.RoundRunner`` with the settings of
``hparams/demo/pipeline.yaml``: ``hparams/demo/pseudo_label.yaml`` with its data-driven
thresholds, ``hparams/demo/train_aam.yaml`` with the epochs from the clusters), with the round gate
on :data:`~bench.study.GATE_SHARE` held-out cluster members (which the pipelines leave off by
default) and each fine-tuning validated on the development speakers, on the study pool
(bench.study_data: RAVDESS actors 1-16, LibriSpeech readers not held out, 83 speechocean762
speakers); it evaluates every round's encoder on the three held-out sets, whether the gate keeps
it or not. Per round: clusters against the true speakers that can form one (two or more
utterances in the pool), kept fraction, purity, NMI and ARI of the kept rows, clusters per true
speaker and speakers per cluster, the gate's pseudo-speaker EERs and decision, the AAM epochs,
and the held-out EERs; a figure compares each round's cluster sizes with the true ones. True
speakers are read only to score the rounds. Like the pipeline, the rounds stop after one the gate
rejects (``RoundRunner.run``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
from typing import Dict, List, Sequence

import numpy as np

from bench.common import FIGURES, REPO, SHARED_DATA, command_line, machine, markdown_table, publish
from bench.study import (
    EVAL_SETS,
    GATE_SHARE,
    Study,
    System,
    pipeline_round_settings,
    recorded_epochs,
    split_and_merge,
)
from bench.study_data import prepare_study_data
from bench.study_figures import size_panels
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.inference.baselines import BASELINES
from speechbrain_dino.pipeline.rounds import Round, RoundRunner
from speechbrain_dino.pseudo_labels.outputs import labels_path, read_report


def clustering_record(pool: Sequence[Dict], labels_folder: str) -> Dict:
    """A round's clustering against the true speakers of ``pool`` (its ``spk_id``)."""
    report = read_report(labels_folder)
    cluster_of = {row["ID"]: row["spk_id"] for row in read_manifest(labels_path(labels_folder))}
    names = sorted(set(cluster_of.values()))
    index = {name: position for position, name in enumerate(names)}
    labels = np.array([index[cluster_of[row["ID"]]] if row["ID"] in cluster_of else -1 for row in pool])
    truth = np.array([row["spk_id"] for row in pool])
    kept = report["metrics"]["kept"]
    return {
        "clusters": report["clusters_after_filtering"],
        "kept_percent": 100.0 * report["kept_fraction"],
        "purity": kept["purity"], "nmi": kept["nmi"], "ari": kept["ari"],
        "chosen": {name: report["chosen_settings"][name]["value"] for name in ("ahc_threshold", "min_size")},
        "sizes": np.bincount(labels[labels >= 0]).tolist(),
        **split_and_merge(truth, labels),
    }


def gated_rounds(study: Study) -> RoundRunner:
    """The demo pipeline's rounds on the study pool into the study's folder (``round<k>/``), with the
    gate on :data:`~bench.study.GATE_SHARE` of the members and each fine-tuning validated on the
    development speakers; no evaluation file may reach the labels."""
    settings = pipeline_round_settings(gate_share=GATE_SHARE)
    validation = {"valid_csv": study.data.dev_csv, "valid_trials": study.data.dev_trials}
    return RoundRunner(study.stages, settings, study.data.pretrain_csv, study.output, validation, study.check_labels)


def results_lines(rows: Sequence[Dict], records: Dict[str, Dict], true_count: int) -> List[str]:
    """The per-round table: held-out EERs, then the clustering and the gate."""
    header = ["system", *(f"EER % {label}" for label in EVAL_SETS.values()),
              f"clusters (true {true_count})", "kept %", "purity", "NMI kept", "ARI kept",
              "clusters per speaker", "speakers per cluster", "threshold, min size", "AAM epochs", "gate: pseudo-EER %"]
    body = []
    for row in rows:
        record = records.get(row["system"])
        cells = [row["system"], *(f"{row[key]:.2f}" for key in EVAL_SETS)]
        if record is None:
            cells += ["-"] * 10
        else:
            cells += [str(record["clusters"]), f"{record['kept_percent']:.0f}", f"{record['purity']:.3f}",
                      f"{record['nmi']:.3f}", f"{record['ari']:.3f}", f"{record['clusters_per_speaker']:.2f}",
                      f"{record['speakers_per_cluster']:.2f}",
                      f"{float(record['chosen']['ahc_threshold']):.3f}, {record['chosen']['min_size']}",
                      str(record["aam_epochs"]), record["gate"]]
        body.append(cells)
    return markdown_table(header, body)


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", required=True, help="NAME=PRETRAINED_DIR: the label-free encoder to start from")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output_folder", default=None, help="default bench/work/rounds_<NAME>")
    args = parser.parse_args(argv)
    start_name, start_dir = args.init.split("=", 1)
    args.output_folder = args.output_folder or os.path.join(REPO, "bench", "work", f"rounds_{start_name}")
    args.gpu, args.epochs, args.budget = False, None, None
    started = datetime.datetime.now()
    study = Study(args)
    study.data = data = prepare_study_data(SHARED_DATA, study.folder("data"))
    pool = read_manifest(data.pretrain_csv)

    start = System(start_name, os.path.abspath(start_dir))
    study.evaluate_sets(start, BASELINES)
    rows = [study.row(System(name, ""), evaluated_with=start) for name in BASELINES] + [study.row(start)]
    records: Dict[str, Dict] = {}

    def evaluate_round(round_: Round) -> None:
        """A round's encoder on the held-out sets (kept by the gate or not), and its record."""
        system = System(round_.name, round_.encoder)
        study.evaluate_sets(system, ())
        rows.append(study.row(system))
        records[round_.name] = {
            **clustering_record(pool, round_.labels), "aam_epochs": recorded_epochs(os.path.dirname(round_.encoder)),
            "gate": round_.decision.cell() if round_.decision else "skipped (clusters too small)",
        }
        with open(study.folder("records.json"), "w", encoding="utf-8") as fout:
            json.dump({"rows": rows, "records": records}, fout, indent=1)

    gated_rounds(study).run(args.rounds, start.pretrained, evaluate_round)

    speakers, counts = np.unique([row["spk_id"] for row in pool], return_counts=True)
    true_sizes = counts[counts >= 2]
    figure = size_panels({f"rounds from {start_name}": {name: record["sizes"] for name, record in records.items()}},
                         true_sizes, "true speakers (>= 2 utts)", os.path.join(FIGURES, f"rounds_{start_name}_sizes.png"))
    tag = f"rounds_{start_name}"
    header = [
        f"Command: `{command_line('rounds_study', argv)}`  ",
        f"Date: {started.date().isoformat()}; machine: {machine()}; wall time "
        f"{(datetime.datetime.now() - started).total_seconds() / 60:.0f} min.  ",
        f"Pool: {len(pool)} utterances of {len(speakers)} speakers, {len(true_sizes)} of them with two or more "
        "utterances (the speakers a cluster can find); true speakers read only for scoring. Settings of "
        "hparams/demo/pipeline.yaml (data-driven thresholds, AAM epochs from the clusters) and the round gate "
        "on 20% held-out members; seeds 1986 (training), 0 (trials).",
        "",
    ]
    block = "\n".join(header + results_lines(rows, records, len(true_sizes))
                      + ["", f"![cluster sizes per round]({os.path.relpath(figure, REPO)})"])
    publish(tag, block)


if __name__ == "__main__":
    main()
