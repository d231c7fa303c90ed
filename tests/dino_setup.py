"""Shared set-up of the DINO training tests: a tiny corpus, a tiny, fast preset, and the environment
of a recipe run in a fresh process with an injected fault (``tests/fault_runner.py``)."""
from __future__ import annotations

import importlib
import os
from typing import Dict, List, Optional

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


#: torch.save calls of the (main) process per checkpoint of a run with TINY_OVERRIDES (student,
#: teacher, heads, loss, optimiser, RNG and epoch averages).
SAVES_PER_CHECKPOINT = 8
#: The repository, and the fault-injection runner (see its docstring).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULT_RUNNER = os.path.join(REPO, "tests", "fault_runner.py")


def fault_env(fault: Optional[str] = None, rank: Optional[int] = None) -> Dict[str, str]:
    """The environment of a recipe process: this checkout importable, one thread, and ``fault``
    (``SBDINO_FAULT``) on torchrun rank ``rank`` (every process when None), or none."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    for key in ("SBDINO_FAULT", "SBDINO_FAULT_RANK"):
        env.pop(key, None)
    if fault:
        env["SBDINO_FAULT"] = fault
    if fault and rank is not None:
        env["SBDINO_FAULT_RANK"] = str(rank)
    return env


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
