"""Shared set-up of the DINO training tests: a tiny corpus and a tiny, fast preset."""
from __future__ import annotations

import importlib
import os
from typing import List

from conftest import write_tone

from speechbrain_dino.data.manifest import write_manifest

#: Overrides that shrink hparams/demo/dino_ecapa.yaml to seconds per epoch on CPU.
TINY_OVERRIDES = [
    "--student={channels: [32, 32, 32, 32, 96], attention_channels: 16, se_channels: 16}",
    "--embedding_dim=32",
    "--n_prototypes=64",
    "--student_head={hidden_size: 64, bottleneck_size: 32}",
    "--crops={global_seconds: 1.0, local_seconds: 0.5}",
    "--batch_size=4",
    "--schedule={warmup_epochs: 0.5}",
    "--noprogressbar",
]


def tone_corpus(folder: str, count: int = 8) -> str:
    """``count`` short generated utterances and their manifest; returns the manifest path."""
    rows: List[dict] = []
    for index in range(count):
        seconds = 1.2 + 0.1 * index
        wav = write_tone(os.path.join(folder, f"u{index}.wav"), seconds=seconds, seed=index)
        rows.append({"ID": f"u{index}", "duration": seconds, "wav": wav, "spk_id": ""})
    path = os.path.join(folder, "train.csv")
    write_manifest(rows, path)
    return path


def run_recipe(name: str, hparams_file: str, *args: str) -> None:
    """Runs the recipe ``speechbrain_dino.recipes.<name>`` in this process (as a fresh process would)."""
    importlib.import_module(f"speechbrain_dino.recipes.{name}").main([hparams_file, *args])
