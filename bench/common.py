"""Helpers shared by the benchmark scripts: where the real data is, machine description, output."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from typing import Sequence

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("SBDINO_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
RESULTS = os.path.join(REPO, "bench", "results")


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        model = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in model.splitlines() if "Model name" in line), cpu)
    except OSError:
        model = cpu
    return f"{os.cpu_count()} CPU cores ({model}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def write_result(name: str, command: str, lines: Sequence[str]) -> str:
    """Writes ``bench/results/<name>.md`` with the command, date and machine; returns its text."""
    text = "\n".join(
        [f"Command: `{command}`", f"Date: {datetime.date.today().isoformat()}", f"Machine: {machine()}", "", *lines]
    )
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.md"), "w", encoding="utf-8") as fout:
        fout.write(text + "\n")
    return text
