#!/usr/bin/env python3
"""Self-supervised pretraining on real speech (../shared/data), evaluated on held-out speakers.

    python bench/ssl_shared.py --system dino --epochs 38 --output_folder bench/work/dino
    python bench/ssl_shared.py --system contrastive --epochs 38 --output_folder bench/work/contrastive

Pretrains without labels on librispeech_251 + RAVDESS actors 1-16 (1211 utterances) with the
small CPU preset ``hparams/demo/<system>_ecapa.yaml``, then evaluates the encoder beside the MFCC
statistics and random-init baselines on RAVDESS actors 17-24 (never seen in pretraining):
speaker verification on all pairs (the reference run's protocol in PAPER.md) and on pairs that
cross emotion and sentence, and emotion recognition with actor-independent folds. Appends a
Markdown block to ``bench/results/ssl_shared.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, RESULTS, SHARED_DATA, machine  # noqa: E402

from speechbrain_dino.manifest import read_manifest, write_manifest  # noqa: E402
from speechbrain_dino.pipeline import run_recipe  # noqa: E402
from speechbrain_dino.prepare.librispeech import prepare_librispeech  # noqa: E402
from speechbrain_dino.prepare.ravdess import prepare_ravdess  # noqa: E402
from speechbrain_dino.trial_generation import generate_trials  # noqa: E402
from speechbrain_dino.trials import write_trials  # noqa: E402

HELD_OUT_ACTORS = range(17, 25)


def sentence(row) -> str:
    """RAVDESS statement (01 or 02), the fifth field of the file name."""
    return row["ID"].split("-")[4]


def prepare(data: str) -> dict:
    """Manifests and trial lists; asserts the evaluation speakers are out of the training set."""
    os.makedirs(data, exist_ok=True)
    prepare_ravdess(os.path.join(SHARED_DATA, "ravdess"), os.path.join(data, "ravdess.csv"))
    prepare_librispeech(os.path.join(SHARED_DATA, "librispeech_251"), os.path.join(data, "librispeech.csv"))
    ravdess = read_manifest(os.path.join(data, "ravdess.csv"))
    test = [row for row in ravdess if int(row["spk_id"]) in HELD_OUT_ACTORS]
    train = [row for row in ravdess if int(row["spk_id"]) not in HELD_OUT_ACTORS]
    train += [dict(row, spk_id="ls" + row["spk_id"]) for row in read_manifest(os.path.join(data, "librispeech.csv"))]
    assert not {row["spk_id"] for row in train} & {row["spk_id"] for row in test}
    assert not {row["wav"] for row in train} & {row["wav"] for row in test}
    paths = {name: os.path.join(data, f"{name}.csv") for name in ("train", "test")}
    write_manifest(train, paths["train"])
    write_manifest(test, paths["test"])
    paths["all_pairs"] = os.path.join(data, "trials_all_pairs.txt")
    write_trials(generate_trials(test), paths["all_pairs"])
    paths["cross"] = os.path.join(data, "trials_cross_emotion_sentence.txt")
    write_trials(generate_trials(test, cross=["emotion", sentence], seed=0), paths["cross"])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", choices=["dino", "contrastive"], default="dino")
    parser.add_argument("--epochs", type=int, default=38, help="38 x 37 steps = the reference's 1418")
    parser.add_argument("--output_folder", default=os.path.join(REPO, "bench", "work", "ssl"))
    parser.add_argument("--extra", nargs="*", default=[], help="more key=value overrides for training")
    args = parser.parse_args()
    out = os.path.abspath(args.output_folder)
    paths = prepare(os.path.join(out, "data"))
    hparams = os.path.join(REPO, "hparams", "demo", f"{args.system}_ecapa.yaml")
    overrides = {"train_csv": paths["train"], "output_folder": os.path.join(out, "train"), "number_of_epochs": args.epochs}
    overrides.update(dict(item.split("=", 1) for item in args.extra))
    start = time.perf_counter()
    run_recipe("train_dino.py", hparams, overrides, f"{args.system} pretraining")
    train_minutes = (time.perf_counter() - start) / 60
    pretrained = os.path.join(out, "train", "pretrained")
    results = {}
    for name in ("all_pairs", "cross"):
        folder = os.path.join(out, f"verification_{name}")
        run_recipe("eval_verification.py", os.path.join(REPO, "hparams", "verification.yaml"), {
            "pretrained_path": pretrained, "test_csv": paths["test"], "trials": paths[name],
            "output_folder": folder, "system_name": args.system,
        }, f"verification ({name})")
        with open(os.path.join(folder, "results.json"), encoding="utf-8") as fin:
            results[name] = json.load(fin)
    emotion_folder = os.path.join(out, "emotion")
    run_recipe("eval_emotion.py", os.path.join(REPO, "hparams", "emotion.yaml"), {
        "pretrained_path": pretrained, "data_csv": paths["test"], "output_folder": emotion_folder,
        "system_name": args.system, "protocol": "speaker_kfold", "folds": 4,
    }, "emotion")
    with open(os.path.join(emotion_folder, "results.json"), encoding="utf-8") as fin:
        emotion = json.load(fin)

    log = open(os.path.join(out, "train", "train_log.txt"), encoding="utf-8").read().splitlines()
    systems = [args.system, "mfcc_stats", "random_init"]

    def metric(block, system, key):
        return block[key] if system == args.system else block["baselines"][system]["raw"][key]

    lines = [
        f"### {args.system}, {args.epochs} epochs ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python bench/ssl_shared.py --system {args.system} --epochs {args.epochs}"
        + (f" --extra {' '.join(args.extra)}" if args.extra else "") + "`",
        f"Machine: {machine()}. Training wall time: {train_minutes:.1f} min.",
        f"First / last epoch: `{log[0][:160]}` / `{log[-1][:160]}`",
        "",
        "| system | EER % all pairs | minDCF(0.01) | EER % cross emotion+sentence | emotion micro-F1 % (4 actor folds) |",
        "|---|---|---|---|---|",
    ]
    for system in systems:
        f1 = emotion["micro_f1"] if system == args.system else emotion["baselines"][system]["micro_f1"]
        lines.append(
            f"| {system} | {metric(results['all_pairs'], system, 'EER'):.2f} | "
            f"{metric(results['all_pairs'], system, 'minDCF_0.01'):.3f} | "
            f"{metric(results['cross'], system, 'EER'):.2f} | {f1:.2f} |"
        )
    text = "\n".join(lines) + "\n\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "ssl_shared.md"), "a", encoding="utf-8") as fout:
        fout.write(text)
    print(text)


if __name__ == "__main__":
    main()
