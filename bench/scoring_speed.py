"""Time to score 1M verification trials (cosine, AS-norm) and compute EER / minDCF.

    python -m bench.scoring_speed [--trials 1000000] [--utterances 20000] [--cohort 6000]
"""
from __future__ import annotations

import argparse
import time
from typing import List

import numpy as np

from bench.common import command_line, write_result
from speechbrain_dino.verification.metrics import verification_metrics
from speechbrain_dino.verification.scoring import as_norm, cosine_scores


def timed(function, *args, **kwargs):
    """``function(*args, **kwargs)`` and its wall seconds."""
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - start


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by ``bench/run_all.py``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--utterances", type=int, default=20_000)
    parser.add_argument("--cohort", type=int, default=6_000)
    parser.add_argument("--dim", type=int, default=192)
    return parser


def measure(args: argparse.Namespace) -> List[str]:
    """Generates the embeddings and trials, times each step; returns the Markdown lines."""
    rng = np.random.default_rng(0)
    speakers = rng.integers(0, 1000, args.utterances)
    centres = rng.standard_normal((1000, args.dim)).astype(np.float32)
    embeddings = centres[speakers] + 1.5 * rng.standard_normal((args.utterances, args.dim)).astype(np.float32)
    cohort = rng.standard_normal((args.cohort, args.dim)).astype(np.float32)
    enrol = rng.integers(0, args.utterances, args.trials)
    test = rng.integers(0, args.utterances, args.trials)
    labels = (speakers[enrol] == speakers[test]).astype(np.int8)
    labels[: args.trials // 100] = 1  # make sure both classes are present
    scores, cosine_seconds = timed(cosine_scores, embeddings, enrol, test)
    _, norm_seconds = timed(as_norm, scores, embeddings, enrol, test, cohort, top_n=300)
    _, metric_seconds = timed(verification_metrics, scores, labels)
    lines = [
        f"{args.trials:,} trials over {args.utterances:,} embeddings of {args.dim} dims, cohort {args.cohort:,}.",
        "",
        "| step | wall s |",
        "|---|---|",
        f"| cosine scores | {cosine_seconds:.2f} |",
        f"| AS-norm (top 300 per side) | {norm_seconds:.2f} |",
        f"| EER + minDCF(0.01, 0.05) | {metric_seconds:.2f} |",
        f"| total with AS-norm | {cosine_seconds + norm_seconds + metric_seconds:.2f} |",
    ]
    return lines


def main() -> None:
    lines = measure(build_parser().parse_args())
    print(write_result("scoring_speed", command_line("scoring_speed"), lines))


if __name__ == "__main__":
    main()
