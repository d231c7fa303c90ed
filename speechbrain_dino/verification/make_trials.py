"""Command line for verification trials over a labelled manifest (corpora without official lists).

    python -m speechbrain_dino.verification.make_trials --manifest held_out.csv --output trials.txt \
        --n_target 5000 --n_nontarget 5000 --cross emotion --seed 0

Leave out the counts for every valid pair. ``--cross`` names manifest columns in which target
pairs must differ (e.g. ``emotion``); ``--same`` a column non-target pairs must share.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.errors import DataError, os_error_message
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import write_trials


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses arguments, writes the trial list, prints its size; exit 2 on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True, help="manifest with spk_id (held-out speakers)")
    parser.add_argument("--output", required=True, help="trial file to write")
    parser.add_argument("--n_target", type=int, default=None)
    parser.add_argument("--n_nontarget", type=int, default=None)
    parser.add_argument("--cross", nargs="*", default=[], help="columns target pairs must differ in")
    parser.add_argument("--same", default=None, help="column non-target pairs must share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    try:
        if os.path.exists(args.output) and not args.overwrite:
            raise DataError("exists; pass --overwrite to replace it", args.output)
        rows = read_manifest(args.manifest, required=("ID", "duration", "wav", "spk_id", *args.cross))
        trials = generate_trials(
            rows, args.n_target, args.n_nontarget, seed=args.seed, cross=args.cross, same_field=args.same
        )
        write_trials(trials, args.output)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. an output folder that cannot be written
        print(f"error: {os_error_message(error)}", file=sys.stderr)
        return 2
    targets = int(trials.labels.sum())
    print(f"{args.output}: {len(trials)} trials ({targets} target, {len(trials) - targets} non-target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
