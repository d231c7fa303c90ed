"""``python -m speechbrain_dino.prepare CORPUS --data_folder DIR --save_csv FILE [options]``.

Writes the manifest, logs the skipped files to stderr and prints the report as JSON on stdout.
Bad input (or an unwritable output) prints one line ``error: ...`` and exits with status 2. Options left out take the
defaults of the corpus's ``prepare_<corpus>`` function.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from typing import List, Optional

from speechbrain_dino.errors import DataError
from speechbrain_dino.prepare import CORPORA


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per corpus, each with the common options and the corpus's own."""
    parser = argparse.ArgumentParser(prog="python -m speechbrain_dino.prepare", description=__doc__)
    corpora = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for name, (prepare, module) in CORPORA.items():
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = corpora.add_parser(name, help=summary, description=summary)
        sub.add_argument("--data_folder", required=True, help="the corpus root")
        sub.add_argument("--save_csv", required=True, help="the manifest to write")
        sub.add_argument(
            "--sample_rate",
            type=int,
            default=argparse.SUPPRESS,
            help="expected sample rate (default 16000)",
        )
        sub.add_argument(
            "--resample",
            action="store_true",
            default=argparse.SUPPRESS,
            help="keep files at another rate (they are resampled when loaded)",
        )
        sub.add_argument(
            "--min_duration",
            type=float,
            default=argparse.SUPPRESS,
            help="skip files shorter than this many seconds (default "
            f"{inspect.signature(prepare).parameters['min_duration'].default})",
        )
        sub.add_argument(
            "--strict",
            dest="skip_invalid",
            action="store_false",
            default=argparse.SUPPRESS,
            help="stop at the first invalid file",
        )
        module.add_arguments(sub)
        sub.set_defaults(prepare=prepare)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one preparation; returns the exit status (0, or 2 on a DataError)."""
    options = vars(build_parser().parse_args(argv))
    prepare = options.pop("prepare")
    options.pop("corpus")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = prepare(**options)
    except (DataError, OSError) as error:  # bad input, or an unwritable save_csv
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
