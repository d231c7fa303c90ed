"""Embedding extraction: batched (this project) vs EncoderClassifier.encode_batch one file at a time.

    python -m bench.extraction_speed [--limit 480] [--channels 512]

Both paths use the same exported encoder (random weights: speed and agreement do not depend on
training) on RAVDESS utterances from the benchmark data folder; reports wall time of each, the speed-up and
the agreement of the embeddings (cosine).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import List

import numpy as np
import torch

from bench.common import SHARED_DATA, command_line, write_result
from speechbrain_dino.data.audio import load_audio
from speechbrain_dino.inference.embeddings import extract_embeddings, load_encoder
from speechbrain_dino.inference.export import Architecture, export_pretrained
from speechbrain_dino.prepare.ravdess import prepare_ravdess

ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by ``bench/run_all.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=480, help="utterances (RAVDESS actors 17-24 = 480)")
    parser.add_argument("--channels", type=int, default=512, help="ECAPA width C")
    return parser


def measure(args: argparse.Namespace) -> List[str]:
    """Runs both extraction paths; returns the Markdown lines of the result."""
    work = tempfile.mkdtemp(prefix="sbdino-bench-")
    prepare_ravdess(os.path.join(SHARED_DATA, "ravdess"), os.path.join(work, "ravdess.csv"))
    from speechbrain_dino.data.manifest import read_manifest

    rows = [row for row in read_manifest(os.path.join(work, "ravdess.csv")) if int(row["spk_id"]) >= 17]
    rows = rows[: args.limit]
    c = args.channels
    architecture = Architecture(ECAPA, dict(input_size=80, channels=[c, c, c, c, 3 * c], lin_neurons=192), {"n_mels": 80})
    torch.manual_seed(0)
    folder = export_pretrained(os.path.join(work, "pretrained"), architecture.build_encoder().eval(), architecture)

    start = time.perf_counter()
    batched = extract_embeddings(folder, rows, progress=False).vectors
    batched_seconds = time.perf_counter() - start

    encoder = load_encoder(folder)
    start = time.perf_counter()
    with torch.inference_mode():
        single = np.stack(
            [encoder.encode_batch(load_audio(row["wav"]).unsqueeze(0)).squeeze().numpy() for row in rows]
        )
    single_seconds = time.perf_counter() - start

    cosine = (batched * single).sum(1) / (np.linalg.norm(batched, axis=1) * np.linalg.norm(single, axis=1))
    audio_hours = sum(float(row["duration"]) for row in rows) / 3600
    lines = [
        f"{len(rows)} RAVDESS utterances ({audio_hours * 60:.1f} min of audio), ECAPA-TDNN C={c}, 80 mels, CPU.",
        "",
        "| path | wall s | utterances/s | ratio |",
        "|---|---|---|---|",
        f"| EncoderClassifier.encode_batch, one file at a time | {single_seconds:.1f} | {len(rows) / single_seconds:.1f} | 1.00 |",
        f"| extract_embeddings (length-sorted batches) | {batched_seconds:.1f} | {len(rows) / batched_seconds:.1f} | "
        f"{single_seconds / batched_seconds:.2f}x faster |",
        "",
        f"Agreement with one-at-a-time embeddings: cosine min {cosine.min():.6f}, mean {cosine.mean():.6f}.",
    ]
    return lines


def main() -> None:
    lines = measure(build_parser().parse_args())
    print(write_result("extraction_speed", command_line("extraction_speed"), lines))


if __name__ == "__main__":
    main()
