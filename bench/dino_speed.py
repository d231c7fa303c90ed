"""DINO step cost and data-loading headroom on CPU, with the small preset on RAVDESS audio.

    python -m bench.dino_speed [--steps 10] [--hparams hparams/demo/dino_ecapa.yaml]

Measured in one run on the same batches of crops:
- a full DINO training step (augmentation, features, student on all crops, teacher on the global
  crops, loss, optimiser step, teacher EMA) through ``SelfDistillationBrain.fit_batch``;
- the plain student forward + backward + optimiser step on the same crops (no teacher, no
  augmentation, no EMA): the cost of supervised training on the same crops;
- the data loader alone (reading, cropping, collating), with 0 and 2 workers, against the rate at
  which training consumes batches.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import List

import torch
from speechbrain.dataio.dataloader import make_dataloader

from bench.common import SHARED_DATA, command_line, write_result
from speechbrain_dino.config.loading import load_hparams
from speechbrain_dino.data.crops import multicrop_pipeline
from speechbrain_dino.data.dataio import dataset_from_manifest
from speechbrain_dino.prepare.ravdess import prepare_ravdess
from speechbrain_dino.training.brains.multicrop import views_to_rows


def per_batch_seconds(function, batches) -> float:
    """Mean wall seconds of ``function(batch)`` after one warm-up call."""
    function(batches[0])
    start = time.perf_counter()
    for batch in batches:
        function(batch)
    return (time.perf_counter() - start) / len(batches)


def loader_seconds(dataset, batch_size: int, workers: int, count: int) -> float:
    """Mean wall seconds per batch of the data loader alone."""
    loader = make_dataloader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return (time.perf_counter() - start) / count


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by ``bench/run_all.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--hparams", default="hparams/demo/dino_ecapa.yaml")
    return parser


def measure(args: argparse.Namespace) -> List[str]:
    """Runs the measurements; returns the Markdown lines of the result."""
    work = tempfile.mkdtemp(prefix="sbdino-speed-")
    manifest = os.path.join(work, "ravdess.csv")
    prepare_ravdess(os.path.join(SHARED_DATA, "ravdess"), manifest)
    _, _, hparams = load_hparams(args.hparams, {"train_csv": manifest, "output_folder": os.path.join(work, "out")})
    dataset = dataset_from_manifest(manifest)
    dataset.add_dynamic_item(multicrop_pipeline(hparams["crops"]))
    dataset.set_output_keys(["id", "global_crops", "local_crops", "n_padded_crops"])
    batch_size = hparams["batch_size"]
    loader = make_dataloader(dataset, batch_size=batch_size, shuffle=True)
    batches = [batch for _, batch in zip(range(args.steps + 1), loader)]

    brain = hparams["brain_class"](
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
    )
    brain.steps_per_epoch = 100
    brain.on_fit_start()
    brain.modules.train()
    dino_seconds = per_batch_seconds(brain.fit_batch, batches)

    student = hparams["modules"]["student"]
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)

    def plain_step(batch):
        crops = [views_to_rows(batch.global_crops.data), views_to_rows(batch.local_crops.data)]
        embeddings = torch.cat([student(brain.features(wavs)) for wavs in crops])
        embeddings.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    plain_seconds = per_batch_seconds(plain_step, batches)
    loading = {workers: loader_seconds(dataset, batch_size, workers, args.steps) for workers in (0, 2)}
    lines = [
        f"Preset `{args.hparams}`, batch {batch_size}, crops "
        f"{hparams['crops'].n_global} x {hparams['crops'].global_seconds} s + "
        f"{hparams['crops'].n_local} x {hparams['crops'].local_seconds} s, RAVDESS audio, {args.steps} steps each.",
        "",
        "| measurement | s / batch | ratio |",
        "|---|---|---|",
        f"| plain student forward + backward + step, same crops | {plain_seconds:.3f} | 1.00 |",
        f"| full DINO step (augment, student, teacher, loss, step, EMA) | {dino_seconds:.3f} | "
        f"{dino_seconds / plain_seconds:.2f} (goal <= 1.3) |",
        f"| data loading, 0 workers (in the training process) | {loading[0]:.3f} | "
        f"{dino_seconds / loading[0]:.1f}x faster than training consumes (goal >= 3) |",
        f"| data loading, 2 workers | {loading[2]:.3f} | {dino_seconds / loading[2]:.1f}x |",
    ]
    return lines


def main() -> None:
    lines = measure(build_parser().parse_args())
    print(write_result("dino_speed", command_line("dino_speed"), lines))


if __name__ == "__main__":
    main()
