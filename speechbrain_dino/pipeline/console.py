"""What a chained run prints: one line per stage as it starts and ends, with a time estimate.

A stage's own output (SpeechBrain logging, progress bars) goes to a log file in its folder (see
:func:`speechbrain_dino.pipeline.stages.run_recipe`); the console shows where the run is::

    [ 1/11] DINO pretraining ...
    [ 1/11] DINO pretraining: 2m31s | loss 4.12 | elapsed 2m31s, about 5m40s left
    [ 2/11] DINO: verification: done before | EER DINO 33.70%, mfcc_stats 23.02%

The remaining time is the sum, over the planned stages not yet run, of the measured mean cost of
stages of the same kind (recipe) when one has run, otherwise of the kind's prior relative cost
(:data:`RELATIVE_COST`) scaled by what the stages run so far cost against their priors.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, TextIO

import yaml
from speechbrain.core import DEFAULT_LOG_CONFIG

#: Prior cost of each kind of stage relative to a verification run (the demo's measured ratios,
#: rounded); only used until a stage of the kind has run.
RELATIVE_COST: Dict[str, float] = {
    "train_dino": 10.0,
    "train_aam": 5.0,
    "pseudo_label": 1.0,
    "eval_verification": 1.0,
    "eval_emotion": 1.0,
}


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1m15s"``; ``3725`` -> ``"1h02m"``; ``8.4`` -> ``"8s"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class StageConsole:
    """Prints the progress lines of a run of stages and estimates the time left.

    Arguments
    ---------
    plan : sequence of str
        The kind (recipe name) of every stage the run will start, in order; ``()`` when unknown
        (then the lines show ``[i/?]`` and no estimate).
    verbose : bool
        Whether the stages' own output is streamed to the terminal too (read by the stage runner).
    out : text stream
        Where the lines go (standard output by default).
    clock : callable
        Seconds, monotonic (a fake one in tests).
    """

    def __init__(
        self,
        plan: Sequence[str] = (),
        verbose: bool = False,
        out: Optional[TextIO] = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.plan: List[str] = list(plan)
        self.verbose = verbose
        self.out = out
        self.clock = clock
        self.started_at = clock()
        self.index = 0
        self.measured: Dict[str, List[float]] = {}

    def print(self, text: str) -> None:
        """One line to the console (flushed, so that it shows before a stage's long run)."""
        print(text, file=self.out or sys.stdout, flush=True)

    def _prefix(self) -> str:
        total = str(len(self.plan)) if self.plan else "?"
        return f"[{self.index:>{len(total)}}/{total}]"

    def stage_started(self, name: str) -> None:
        """A stage starts running: ``[i/N] name ...``."""
        self.index += 1
        self.print(f"{self._prefix()} {name} ...")

    def stage_finished(self, name: str, kind: str, seconds: float, summary: str) -> None:
        """A stage ran for ``seconds``: its wall time, key number, the run's elapsed and left times."""
        self.measured.setdefault(kind, []).append(seconds)
        left = self.estimate_left()
        timing = f"elapsed {format_duration(self.clock() - self.started_at)}"
        if left is not None and self.index < len(self.plan):
            timing += f", about {format_duration(left)} left"
        self.print(f"{self._prefix()} {name}: {format_duration(seconds)} | {summary} | {timing}")

    def stage_skipped(self, name: str, summary: str) -> None:
        """A stage whose outputs exist: ``[i/N] name: done before | key number``."""
        self.index += 1
        self.print(f"{self._prefix()} {name}: done before | {summary}")

    def replan(self, remaining: Sequence[str]) -> None:
        """The kinds of the stages still to start, when the run learns it will start others than
        planned (a round gate skipped, a rejected round ending the rounds)."""
        self.plan = self.plan[:self.index] + list(remaining)

    def estimate_left(self) -> Optional[float]:
        """Seconds the planned stages after the current one should take (None before any ran)."""
        if not self.measured:
            return None
        spent = sum(sum(times) for times in self.measured.values())
        prior = sum(RELATIVE_COST.get(kind, 1.0) * len(times) for kind, times in self.measured.items())
        per_unit = spent / prior
        left = 0.0
        for kind in self.plan[self.index:]:
            times = self.measured.get(kind)
            left += sum(times) / len(times) if times else RELATIVE_COST.get(kind, 1.0) * per_unit
        return left


@contextlib.contextmanager
def experiment_log_config(quiet: bool) -> Iterator[str]:
    """The logging configuration for ``sb.create_experiment_directory``: SpeechBrain's own, or, when
    ``quiet``, the same with its terminal handler at WARNING (the experiment's ``log.txt`` keeps
    every line), so that a quiet run's terminal shows the progress lines only."""
    if not quiet:
        yield DEFAULT_LOG_CONFIG
        return
    with open(DEFAULT_LOG_CONFIG, encoding="utf-8") as fin:
        config = yaml.safe_load(fin)
    config["handlers"]["console"]["level"] = "WARNING"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as fout:
        yaml.safe_dump(config, fout)
    try:
        yield fout.name
    finally:
        os.remove(fout.name)
