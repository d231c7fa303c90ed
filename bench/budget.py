"""Turning a budget in minutes into a number of epochs, from step times measured on this machine.

A training recipe is run twice in SpeechBrain's debug mode (``--debug --debug_batches=n``, one
epoch, into a scratch folder) with a few and with more batches; the difference of the two wall
times over the difference of their batch counts is the cost of one training step, start-up and
export excluded. The epochs of the real run are then the budget over (step cost x steps per
epoch). Schedules stay whole: a run is planned to its budget, not cut off at it.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Mapping, Sequence, Tuple

import yaml

from speechbrain_dino.pipeline.stages import run_recipe

PROBE_BATCHES = (2, 8)


class _TagIgnoringLoader(yaml.SafeLoader):
    """Reads a HyperPyYAML file's plain values; tagged nodes (``!new:`` ...) become None."""


_TagIgnoringLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def plain_values(hparams_file: str) -> Dict[str, Any]:
    """The untagged settings of a HyperPyYAML file (e.g. ``batch_size``, ``schedule``), nothing built."""
    with open(hparams_file, encoding="utf-8") as fin:
        return yaml.load(fin, Loader=_TagIgnoringLoader)


def seconds_per_step(
    recipe: str, hparams_file: str, overrides: Mapping[str, Any], scratch: str, run_options: Sequence[str] = ()
) -> Tuple[float, float]:
    """Measured wall seconds of one training step of ``recipe``, and the probes' peak memory (GB).

    ``recipe`` is a recipe module name (``train_dino``, ``train_aam``); ``overrides`` must make it
    runnable (data, ``init_from``...); ``output_folder`` is set here, one scratch folder per probe;
    ``run_options`` (e.g. ``--device=cuda:0``) go to every probe.
    """
    seconds = {}
    peak_gb = 0.0
    for batches in PROBE_BATCHES:
        usage = run_recipe(
            recipe, hparams_file, {**overrides, "output_folder": os.path.join(scratch, f"probe{batches}")},
            f"step-time probe: {batches} batches", "--debug", f"--debug_batches={batches}", "--debug_epochs=1", *run_options,
        )
        seconds[batches] = usage.seconds
        peak_gb = max(peak_gb, usage.peak_rss_gb)
    few, many = PROBE_BATCHES
    return max((seconds[many] - seconds[few]) / (many - few), 1e-3), peak_gb


def epochs_for_budget(minutes: float, step_seconds: float, n_rows: int, batch_size: int) -> int:
    """Whole epochs (at least 1) of ``n_rows // batch_size`` steps (``drop_last``) in the budget."""
    steps_per_epoch = max(1, n_rows // batch_size)
    return max(1, math.floor(minutes * 60 / (step_seconds * steps_per_epoch) + 0.5))


def remaining_share(minutes: float, first_steps: int, first_step_seconds: float) -> float:
    """The share of a ``minutes`` budget that a first training part of ``first_steps`` steps at
    ``first_step_seconds`` each leaves to the second part (0 when it used it all)."""
    return max(0.0, 1.0 - first_steps * first_step_seconds / (minutes * 60))
