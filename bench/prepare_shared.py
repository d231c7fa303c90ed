"""Benchmark: data preparation on the real recordings of the benchmark data folder
($SBDINO_SHARED_DATA; see bench.common).

Prepares RAVDESS (expects 1440 utterances, 24 speakers, 8 emotions) and librispeech_251 both as a
LibriSpeech folder and as a plain folder with a speaker regex (expects 251 utterances, 251
speakers), asserts those counts, prints a Markdown table and writes it to
``bench/results/prepare_shared.md``. Manifests go to a temporary folder, so every run scans afresh.

    python -m bench.prepare_shared [--data_root DATA] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Callable, Dict, List

from bench.common import RESULTS, SHARED_DATA
from speechbrain_dino.prepare import prepare_folder, prepare_librispeech, prepare_ravdess

LIBRISPEECH_SPEAKER = r"^(?P<spk>\d+)-"


def run(
    name: str, prepare: Callable[..., Dict[str, object]], expected: Dict[str, int], **options
) -> List[str]:
    """Runs one preparation, checks its counts, returns its table cells."""
    start = time.perf_counter()
    report = prepare(**options)
    seconds = time.perf_counter() - start
    found = {key: report.get(key) for key in expected}
    assert found == expected, f"{name}: expected {expected}, found {found}"
    skipped = sum(report["skipped"].values())
    return [
        name,
        os.path.basename(report["data_folder"]),
        str(report["utterances"]),
        str(report["speakers"]),
        str(report.get("emotions", "-")),
        f"{report['hours']:.3f}",
        str(skipped),
        f"{seconds:.2f}",
    ]


def measure(data_root: str) -> str:
    """Runs the three preparations into a temporary folder; returns the Markdown table."""
    ravdess = os.path.join(data_root, "ravdess")
    librispeech = os.path.join(data_root, "librispeech_251")
    with tempfile.TemporaryDirectory() as manifests:
        rows = [
            run(
                "ravdess",
                prepare_ravdess,
                {"utterances": 1440, "speakers": 24, "emotions": 8},
                data_folder=ravdess,
                save_csv=os.path.join(manifests, "ravdess.csv"),
            ),
            run(
                "librispeech",
                prepare_librispeech,
                {"utterances": 251, "speakers": 251},
                data_folder=librispeech,
                save_csv=os.path.join(manifests, "librispeech.csv"),
            ),
            run(
                "folder (speaker regex)",
                prepare_folder,
                {"utterances": 251, "speakers": 251},
                data_folder=librispeech,
                save_csv=os.path.join(manifests, "folder.csv"),
                speaker_regex=LIBRISPEECH_SPEAKER,
            ),
        ]
    header = ["prep", "data", "utterances", "speakers", "emotions", "hours", "skipped", "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Runs the three preparations and writes the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_root", default=SHARED_DATA)
    parser.add_argument("--output", default=os.path.join(RESULTS, "prepare_shared.md"))
    args = parser.parse_args()
    table = measure(args.data_root)
    print(table, end="")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fout:
        fout.write(
            f"Data preparation on the benchmark data ({os.cpu_count()} CPU cores, headers only)\n\n"
            + table
        )


if __name__ == "__main__":
    main()
