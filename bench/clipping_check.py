"""Gradient clipping as the DINO reference does it, checked at every step of one real epoch.

    python -m bench.clipping_check [--max_grad_norm 1.0] [--utterances 480]

Trains one epoch of ``hparams/demo/dino_ecapa.yaml`` (paper DINO, small preset) on RAVDESS actors
1-16 and records, at every optimiser step, every gradient tensor before and after the clip: a
tensor whose norm is at or under ``max_grad_norm`` must be bitwise untouched, one above it must
leave with norm ``max_grad_norm``. Also reported per step: the global norm over all tensors (what
the earlier global-norm clipping scaled by) and how many tensors the per-tensor clip scaled.
Results go to ``bench/results/clipping_check.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Dict, List

import torch

from bench.common import SHARED_DATA, write_result
from bench.study import DEMO_HPARAMS
from speechbrain_dino.data.manifest import read_manifest, write_manifest
from speechbrain_dino.prepare.ravdess import prepare_ravdess
from speechbrain_dino.recipes import train_dino
from speechbrain_dino.training.brains import base


def recording_clip(steps: List[Dict]):
    """A stand-in for ``clip_gradients_`` that checks and summarises every call into ``steps``."""
    original = base.clip_gradients_

    def clip(parameters, max_norm, mode="per_tensor"):
        parameters = [parameter for parameter in parameters if parameter.grad is not None]
        before = [parameter.grad.clone() for parameter in parameters]
        norms = original(parameters, max_norm, mode)
        above = under_touched = 0
        worst = 0.0
        for parameter, gradient in zip(parameters, before):
            if gradient.norm() <= max_norm:
                under_touched += not torch.equal(parameter.grad, gradient)
            else:
                above += 1
                worst = max(worst, abs(parameter.grad.norm().item() - max_norm))
        steps.append({
            "tensors": len(parameters), "above": above, "under_touched": under_touched,
            "worst_clipped_error": worst, "largest_norm": max(g.norm().item() for g in before),
            "global_norm": torch.linalg.vector_norm(torch.stack([g.norm() for g in before])).item(),
        })
        return norms

    return clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--utterances", type=int, default=480, help="RAVDESS utterances of actors 1-16 to train on")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="clipping_check_")
    manifest = os.path.join(work, "ravdess.csv")
    prepare_ravdess(os.path.join(SHARED_DATA, "ravdess"), manifest)
    rows = [row for row in read_manifest(manifest) if int(row["spk_id"]) <= 16][: args.utterances]
    train_csv = os.path.join(work, "train.csv")
    write_manifest(rows, train_csv)
    steps: List[Dict] = []
    base.clip_gradients_ = recording_clip(steps)
    train_dino.main([os.path.join(DEMO_HPARAMS, "dino_ecapa.yaml"), f"--train_csv={train_csv}",
                     f"--output_folder={os.path.join(work, 'out')}", "--number_of_epochs=1",
                     f"--max_grad_norm={args.max_grad_norm}", "--noprogressbar"])
    header = ["step", "tensors", "above the clip (scaled)", "under it but changed", "max abs(clipped norm - clip)",
              "largest tensor norm", "global norm"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, step in enumerate(steps, start=1):
        lines.append(f"| {index} | {step['tensors']} | {step['above']} | {step['under_touched']} | "
                     f"{step['worst_clipped_error']:.1e} | {step['largest_norm']:.3f} | {step['global_norm']:.3f} |")
    verdict = all(step["under_touched"] == 0 and step["worst_clipped_error"] < 1e-4 * args.max_grad_norm for step in steps)
    summary = [
        f"One epoch of hparams/demo/dino_ecapa.yaml on {len(rows)} RAVDESS utterances (actors 1-16), batch 32, "
        f"--max_grad_norm={args.max_grad_norm:g}, per-tensor clipping: {len(steps)} optimiser steps, "
        f"{sum(step['above'] for step in steps)} of {sum(step['tensors'] for step in steps)} gradient tensors scaled. "
        + ("At every step each gradient under the clip was bitwise untouched and each above it left at the clip."
           if verdict else "FAILED: a gradient under the clip was changed or one above it was not scaled to the clip."),
        "",
    ]
    command = f"python -m bench.clipping_check --max_grad_norm {args.max_grad_norm:g} --utterances {args.utterances}"
    print(write_result("clipping_check", command, summary + lines))
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
