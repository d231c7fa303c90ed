"""Why a pseudo-label round hurts: the round's AAM fine-tuning, varied one setting at a time.

    python -m bench.finetune_study --rounds_folder bench/work/rounds_NAME --init NAME=PRETRAINED_DIR \
        [--variants "true labels" "embedding layer only" ...]

Reuses a finished ``bench.rounds_study`` folder: its study data, its round-1 pseudo-labels and
the gate's training split (the rows the pipeline's round 1 fine-tuned on). Every variant fine-tunes
the same starting encoder on those rows, with the fine-tuning of the demo pipeline's rounds
(``hparams/demo/train_aam.yaml`` and ``hparams/demo/pipeline.yaml``'s ``aam_overrides``, as
:func:`bench.study.pipeline_round_settings` reads them) plus the variant's own, and is evaluated
on the three held-out sets. One variant swaps the pseudo-labels for the true speakers of the same
rows: the upper bound of what better clusters could give with this fine-tuning (true speakers are
read for nothing else). Settings are
compared on the development speakers' EER at the end of the fine-tuning; the held-out sets are
reported, never used to choose.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
from typing import Dict, List, Mapping, Sequence

from bench.common import SHARED_DATA, command_line, machine, markdown_table, publish
from bench.study import EVAL_SETS, Study, System, learning_curve, pipeline_round_settings, recorded_epochs, slug
from bench.study_data import prepare_study_data
from speechbrain_dino.data.manifest import read_manifest, write_manifest

#: Variant name -> (label source, AAM overrides on top of the pipeline's ``aam_overrides``).
VARIANTS: Dict[str, tuple] = {
    "pipeline settings": ("pseudo", {}),
    "true labels": ("true", {}),
    "embedding layer only": ("pseudo", {"schedule": {"frozen_share": 1.0}}),
    "lower learning rate": ("pseudo", {"schedule": {"head_lr": 0.0005, "full_lr": 0.0001}}),
}


def true_label_manifest(train_csv: str, out_csv: str) -> str:
    """``train_csv`` with each row's ``spk_id`` replaced by its ``true_spk_id``."""
    rows = [{**row, "spk_id": row["true_spk_id"]} for row in read_manifest(train_csv)]
    write_manifest(rows, out_csv)
    return out_csv


def merged(base: Mapping, extra: Mapping) -> Dict:
    """``base`` updated by ``extra``, one level deep for mapping values (the ``schedule`` block)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, Mapping) else value
    return out


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds_folder", required=True, help="a finished bench.rounds_study output folder")
    parser.add_argument("--init", required=True, help="NAME=PRETRAINED_DIR: the encoder that round 1 started from")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    start_name, start_dir = args.init.split("=", 1)
    args.output_folder = args.rounds_folder
    args.gpu, args.epochs, args.budget = False, None, None
    started = datetime.datetime.now()
    study = Study(args)
    study.data = data = prepare_study_data(SHARED_DATA, study.folder("data"))
    pseudo_csv = study.folder("round1", "gate", "train.csv")
    label_csv = {"pseudo": pseudo_csv,
                 "true": true_label_manifest(pseudo_csv, study.folder("finetune", "true_labels.csv"))}
    round_settings = pipeline_round_settings()  # round 1 of the rounds study fine-tuned with these
    start = System(start_name, os.path.abspath(start_dir))
    study.evaluate_sets(start, ())
    rows: List[Dict] = [{**study.row(start), "dev": learning_curve(os.path.join(start_dir, "..", "train_log.txt"))[-1][1],
                         "epochs": "-"}]
    for name in args.variants:
        source, extra = VARIANTS[name]
        # the pipeline's own settings are round 1 of the rounds study: its folder is reused, not retrained
        folder = study.folder("round1", "aam") if name == "pipeline settings" else study.folder("finetune", slug(name))
        overrides = merged(round_settings.aam_overrides, extra)
        if source == "true":  # the pseudo-labels' epochs, not the fewer that 99 true classes would give
            overrides["examples_per_class"] = None
            overrides["number_of_epochs"] = recorded_epochs(study.folder("round1", "aam"))
        candidate = study.stages.train_aam(
            round_settings.aam_hparams, label_csv[source], start.pretrained, folder,
            {**overrides, "valid_csv": data.dev_csv, "valid_trials": data.dev_trials}, name=f"{name}: AAM fine-tuning",
        )
        system = System(name, candidate)
        study.evaluate_sets(system, ())
        rows.append({**study.row(system), "dev": learning_curve(os.path.join(folder, "train_log.txt"))[-1][1],
                     "epochs": recorded_epochs(folder)})
        with open(study.folder("finetune", "records.json"), "w", encoding="utf-8") as fout:
            json.dump(rows, fout, indent=1)

    header = ["fine-tuning", "labels", "AAM epochs", "dev EER % at the end",
              *(f"EER % {label}" for label in EVAL_SETS.values())]
    table = [[row["system"], VARIANTS.get(row["system"], ("-",))[0], str(row["epochs"]), f"{row['dev']:.2f}",
              *(f"{row[key]:.2f}" for key in EVAL_SETS)] for row in rows]
    block = "\n".join([
        f"Command: `{command_line('finetune_study', argv)}`  ",
        f"Date: {started.date().isoformat()}; machine: {machine()}; wall time "
        f"{(datetime.datetime.now() - started).total_seconds() / 60:.0f} min.  ",
        f"Start: {start_name} (first row); rows: round 1's gate training split ({len(read_manifest(pseudo_csv))} "
        "utterances); seeds 1986 (training), 0 (trials).",
        "",
        *markdown_table(header, table),
    ])
    tag = f"finetune_{slug(start_name)}"
    publish(tag, block)


if __name__ == "__main__":
    main()
