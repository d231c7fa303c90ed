"""Command line of the synthetic corpus (``python -m speechbrain_dino.synthetic``, ``sbdino-synthetic``).

    python -m speechbrain_dino.synthetic --output_folder DIR --speakers 20 --utterances 10 \\
        --emotions 4 --seed 0

writes ``DIR/wav/spk000/spk000_utt0000.wav`` ... and ``DIR/manifest.csv``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from speechbrain_dino.data.manifest import summarize
from speechbrain_dino.errors import DataError
from speechbrain_dino.synthetic.corpus import MANIFEST_FILE, generate_corpus
from speechbrain_dino.synthetic.voices import EMOTION_NAMES


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point (``sbdino-synthetic``); returns the exit status."""
    parser = argparse.ArgumentParser(description="A generated speech-like corpus with speaker and emotion labels")
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--utterances", type=int, default=10, help="per speaker")
    parser.add_argument(
        "--emotions", type=int, default=4, help=f"the first N of {', '.join(EMOTION_NAMES)}"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=8.0)
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a different corpus in the folder"
    )
    args = parser.parse_args(argv)
    try:
        rows = generate_corpus(**vars(args))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{os.path.join(os.path.abspath(args.output_folder), MANIFEST_FILE)}: {summarize(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
