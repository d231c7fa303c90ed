"""Which EER differences of a finished study are more than the luck of its test speakers.

    python -m bench.significance --study_folder bench/work/objectives_20min --reference contrastive \
        [--systems NAME ...] [--draws 1000]

Reads the per-trial score files that a study (bench.objectives, bench.rounds_study,
bench.finetune_study) left under ``<study_folder>/eval/`` and the test manifests of its data
folder, and gives for every system and held-out set its EER with a 95% speaker-bootstrap interval,
and its relative EER change against ``--reference`` with the 95% interval of the paired
bootstrap (same speaker draws for both systems; speechbrain_dino/verification/bootstrap.py).
A change whose interval excludes 0 is marked. The held-out sets have 8 (RAVDESS), 59
(LibriSpeech) and 25 (speechocean762) speakers, so differences of 10-20% can be noise there.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import os
import re
from typing import Dict, Sequence, Tuple

from bench.common import SHARED_DATA, command_line, machine, markdown_table, publish
from bench.study import EVAL_SETS
from bench.study_data import StudyData, prepare_study_data
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.verification.bootstrap import (
    DRAWS,
    Interval,
    SpeakerBootstrap,
    TrialSpeakers,
    eer_interval,
    relative_change,
)
from speechbrain_dino.verification.trials import read_scores, same_trials

SCORE_FILE = re.compile(r"scores_(?P<system>.+)_raw\.txt$")


def score_files(study_folder: str, eval_set: str) -> Dict[str, str]:
    """System name -> its raw score file on ``eval_set``, for every system evaluated in the study."""
    found = {}
    for path in sorted(glob.glob(os.path.join(study_folder, "eval", "*", eval_set, "scores_*_raw.txt"))):
        found.setdefault(SCORE_FILE.search(os.path.basename(path)).group("system"), path)
    return found


def compare_set(files: Dict[str, str], reference: str, systems: Sequence[str], test_csv: str,
                draws: int) -> Dict[str, Tuple[Interval, Interval]]:
    """System -> (its EER interval, its paired change against ``reference``) on one held-out set."""
    trials, reference_scores = read_scores(files[reference])
    speaker_of = {row["ID"]: row["spk_id"] for row in read_manifest(test_csv)}
    bootstrap = SpeakerBootstrap(trials.labels, TrialSpeakers.of(trials.enrol_ids, trials.test_ids, speaker_of), draws)
    reference_eers = bootstrap.eers(reference_scores)
    out = {}
    for system in systems:
        system_trials, scores = read_scores(files[system])
        if not same_trials(system_trials, trials):
            raise ValueError(f"{files[system]} scores other trials than {files[reference]}")
        eers = bootstrap.eers(scores)
        out[system] = (eer_interval(eers), relative_change(reference_eers, eers))
    return out


def cell(eer: Interval, change: Interval, is_reference: bool) -> str:
    """``EER [low, high]`` and, except for the reference, the change with its interval."""
    if is_reference:
        return f"{eer} (reference)"
    mark = " **\\***" if change.high < 0 or change.low > 0 else ""
    return f"{eer}; {change.value:+.0f}% [{change.low:+.0f}, {change.high:+.0f}]{mark}"


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study_folder", required=True)
    parser.add_argument("--reference", required=True, help="the system every other is compared with")
    parser.add_argument("--systems", nargs="*", default=None, help="default: every system with scores on every set")
    parser.add_argument("--draws", type=int, default=DRAWS)
    args = parser.parse_args(argv)
    started = datetime.datetime.now()
    data = prepare_study_data(SHARED_DATA, os.path.join(args.study_folder, "data"))
    files = {eval_set: score_files(args.study_folder, eval_set) for eval_set in EVAL_SETS}
    everywhere = [name for name in files["ravdess"] if all(name in found for found in files.values())]
    systems = args.systems or [args.reference, *(name for name in everywhere if name != args.reference)]
    missing = [name for name in systems if name not in everywhere]
    if missing or args.reference not in everywhere:
        parser.error(f"no scores on every set for {missing or [args.reference]}; have {everywhere}")
    results = {eval_set: compare_set(files[eval_set], args.reference, systems,
                                     getattr(data, f"{eval_set}_test_csv"), args.draws)
               for eval_set in EVAL_SETS}
    table = [[name, *(cell(*results[eval_set][name], name == args.reference) for eval_set in EVAL_SETS)]
             for name in systems]
    tag = f"significance_{os.path.basename(os.path.normpath(args.study_folder))}"
    block = "\n".join([
        f"Command: `{command_line('significance', argv)}`  ",
        f"Date: {started.date().isoformat()}; machine: {machine()}; {args.draws} speaker-bootstrap draws, seed 0.  ",
        "Each cell: EER % [95% interval over resampled test speakers]; then the relative EER change "
        f"against {args.reference} [95% interval of the paired bootstrap]; \\* where that interval excludes 0. "
        "Test speakers: " + ", ".join(f"{label.split(' (')[0]} {speaker_count(data, eval_set)}"
                                      for eval_set, label in EVAL_SETS.items()) + ".",
        "",
        *markdown_table(["system", *EVAL_SETS.values()], table),
    ])
    publish(tag, block)


def speaker_count(data: StudyData, eval_set: str) -> int:
    """The number of speakers in a held-out set's test manifest."""
    return len({row["spk_id"] for row in read_manifest(getattr(data, f"{eval_set}_test_csv"))})


if __name__ == "__main__":
    main()
