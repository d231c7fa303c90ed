"""The paper's claim over a longer horizon: learning curves of paper DINO, the warm start and
contrastive on one schedule of ``--minutes`` each, for speakers and emotion.

    python -m bench.long_horizon --systems "paper DINO"        # one training per core, in parallel:
    python -m bench.long_horizon --systems contrastive          #   taskset -c 0 / -c 1, OMP_NUM_THREADS=1
    python -m bench.long_horizon --systems "warm start"
    python -m bench.long_horizon --report                       # tables, figures, fit, BENCHMARKS block

Each system trains on the study pool (bench.study_data) with a schedule planned for
``--minutes`` (80) of training from its step time measured on this machine (bench.budget), and
exports its encoder after the steps that correspond to each of ``--points`` minutes
(``export_steps``: snapshots of one schedule, so the 20-minute point of an 80-minute schedule is not
a 20-minute run: its learning rate and teacher momentum are still mid-schedule).

- ``contrastive``: hparams/demo/contrastive_ecapa.yaml (NT-Xent).
- ``paper DINO``: hparams/demo/dino_ecapa.yaml as shipped (the paper's method with the reference
  code's clipping, EMA and per-crop babble, at small scale).
- ``warm start``: the pretraining of hparams/demo/pipeline.yaml, as the pipeline runs it: its
  ``warm_start_hparams`` (contrastive) for half the budget (whole epochs), then its
  ``pretraining_hparams`` (SDPN) from that encoder for the time left. Points up to half the budget are
  snapshots of the first part (contrastive on a schedule of half the length), later ones of the
  second, counted from the start of the first.

At every point: EER on the three held-out sets (RAVDESS 17-24, LibriSpeech halves, 25
speechocean762 speakers), each system's relative EER change against contrastive at the same point
with the 95% interval of the paired speaker bootstrap, emotion micro-F1 on RAVDESS 17-24 (4
actor-independent folds, mean and spread) beside the untrained encoder's, and the effective rank of
the speechocean762 embeddings. Then the trend of paper DINO's gap to contrastive: on every
bootstrap draw, a line through log(EER_DINO / EER_contrastive) against log(minutes), and where it
would cross 0; the report gives the median crossing and its 95% interval (speaker sampling only:
one training seed per system).

Every stage runs in its own folder under ``--output_folder`` and a rerun skips finished work;
training resumes from its last checkpoint. Results: ``bench/results/long_horizon.md``, figures in
``bench/results/figures/``, the BENCHMARKS.md block ``long_horizon``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from bench.budget import plain_values
from bench.common import FIGURES, REPO, SHARED_DATA, machine, markdown_table, publish
from bench.study import DEMO_HPARAMS, EVAL_SETS, PIPELINE_YAML, Study, System, folder_name
from bench.study_data import prepare_study_data
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.inference.baselines import BASELINES, embeddings_cache
from speechbrain_dino.inference.embeddings import EmbeddingTable
from speechbrain_dino.pipeline.stages import read_emotion, read_json, read_verification
from speechbrain_dino.training.rank_monitor import effective_rank
from speechbrain_dino.training.snapshots import SNAPSHOTS_FOLDER
from speechbrain_dino.verification.bootstrap import SpeakerBootstrap, TrialSpeakers, eer_interval
from speechbrain_dino.verification.trials import read_scores, same_trials

PIPELINE = plain_values(PIPELINE_YAML)
REFERENCE = "contrastive"
DINO = "paper DINO"
WARM_START = "warm start"
#: system -> its training parts: (hparams file, share of the budget; None: what the first part left)
SYSTEMS: Dict[str, List[Tuple[str, Optional[float]]]] = {
    REFERENCE: [(os.path.join(DEMO_HPARAMS, "contrastive_ecapa.yaml"), 1.0)],
    DINO: [(os.path.join(DEMO_HPARAMS, "dino_ecapa.yaml"), 1.0)],
    WARM_START: [(os.path.join(REPO, PIPELINE["warm_start_hparams"]), 0.5),
                 (os.path.join(REPO, PIPELINE["pretraining_hparams"]), None)],
}
SETS = list(EVAL_SETS)


@dataclasses.dataclass
class Part:
    """One training run of a system: its YAML, epochs and the snapshot steps of its points."""

    hparams_file: str
    folder: str
    epochs: int
    steps: int
    step_seconds: float
    snapshots: List[Tuple[float, int]]  # (minute point, optimiser step of this part)

    def step_at(self, point: float) -> Optional[int]:
        """This part's snapshot step of ``point`` (None when the point belongs to another part)."""
        return next((step for minutes, step in self.snapshots if minutes == point), None)


class LongHorizonStudy(Study):
    """Plans, trains and evaluates the snapshots of each system (see the module)."""

    def steps_per_epoch(self, hparams_file: str) -> int:
        """Optimiser steps per epoch of the pool (``drop_last``)."""
        return max(1, len(read_manifest(self.data.pretrain_csv)) // plain_values(hparams_file)["batch_size"])

    def plan(self, system: str) -> List[Part]:
        """The parts of ``system`` with epochs for the budget and the steps of every point.

        A part with a share of the budget owns the points up to the end of that share; the last
        part owns the rest. A point's step counts from the start of its part, at the part's
        measured step time, from the minutes the earlier parts actually took.
        """
        parts: List[Part] = []
        spent = 0.0  # minutes taken by the earlier parts, at their measured step times
        owned_until = 0.0  # the budget minutes owned by the earlier parts
        plan = SYSTEMS[system]
        for index, (hparams_file, share) in enumerate(plan):
            key = os.path.splitext(os.path.basename(hparams_file))[0]
            seconds = self.calibrate(key, "train_dino", hparams_file, {"train_csv": self.data.pretrain_csv})
            per_epoch = self.steps_per_epoch(hparams_file)
            minutes = self.args.minutes * share if share is not None else self.args.minutes - spent
            epochs = max(1, round(minutes * 60 / (seconds * per_epoch)))
            steps = epochs * per_epoch
            last = index == len(plan) - 1
            upper = math.inf if last else owned_until + self.args.minutes * share
            points = [p for p in self.args.points if owned_until < p <= upper]
            snapshots = [(p, min(steps, max(1, round((p - spent) * 60 / seconds)))) for p in points]
            folder = self.folder(folder_name(system), f"part{index + 1}")
            parts.append(Part(hparams_file, folder, epochs, steps, seconds, snapshots))
            spent += steps * seconds / 60
            owned_until = upper
        return parts

    def train_system(self, system: str) -> List[Part]:
        """Trains every part of ``system`` (the second from the first's export) with its snapshots."""
        parts = self.plan(system)
        init_from = None
        for part in parts:
            overrides = {"number_of_epochs": part.epochs, "export_steps": sorted({step for _, step in part.snapshots}),
                         "valid_csv": self.data.dev_csv, "valid_trials": self.data.dev_trials}
            if init_from:
                overrides["init_from"] = init_from
            init_from = self.stages.train_dino(part.hparams_file, self.data.pretrain_csv, part.folder, overrides,
                                               name=f"{system} ({os.path.basename(part.hparams_file)})")
        with open(self.folder(folder_name(system), "plan.json"), "w", encoding="utf-8") as fout:
            json.dump([dataclasses.asdict(part) for part in parts], fout, indent=1)
        return parts

    def snapshot(self, system: str, point: float, parts: Sequence[Part]) -> System:
        """The exported encoder of ``system`` at ``point`` minutes."""
        part = next(part for part in parts if part.step_at(point) is not None)
        folder = os.path.join(part.folder, SNAPSHOTS_FOLDER, f"step{part.step_at(point)}")
        return System(point_name(system, point), folder)


def point_name(system: str, point: float) -> str:
    """``"paper DINO @20min"``."""
    return f"{system} @{point:g}min"


# --------------------------------------------------------------------- report
@dataclasses.dataclass
class PointResult:
    """Every number of one system at one point."""

    eers: Dict[str, float]
    intervals: Dict[str, Tuple[float, float]]
    changes: Dict[str, Tuple[float, float, float]]  # against the reference at the point: value, low, high
    log_ratio_draws: Dict[str, np.ndarray]  # [B] log(EER / EER_reference) per bootstrap draw
    micro_f1: float
    micro_f1_std: float
    rankme: float
    dims_99: float


def point_results(study: LongHorizonStudy, systems: Sequence[str], draws: int) -> Dict[str, Dict[float, PointResult]]:
    """Reads every evaluated snapshot; paired bootstrap against the reference at the same point."""
    speaker_of = {eval_set: {row["ID"]: row["spk_id"] for row in read_manifest(getattr(study.data, f"{eval_set}_test_csv"))}
                  for eval_set in SETS}
    out: Dict[str, Dict[float, PointResult]] = {system: {} for system in systems}
    for point in study.args.points:
        reference = System(point_name(REFERENCE, point), "")
        for eval_set in SETS:
            trials, reference_scores = read_scores(study.score_file(reference, eval_set))
            sides = TrialSpeakers.of(trials.enrol_ids, trials.test_ids, speaker_of[eval_set])
            bootstrap = SpeakerBootstrap(trials.labels, sides, draws)
            reference_eers = bootstrap.eers(reference_scores)
            for system in systems:
                name = point_name(system, point)
                system_trials, scores = read_scores(study.score_file(System(name, ""), eval_set))
                assert same_trials(system_trials, trials), name
                eers = bootstrap.eers(scores)
                result = out[system].setdefault(point, empty_result(study, name))
                interval = eer_interval(eers)
                result.eers[eval_set], result.intervals[eval_set] = interval.value, (interval.low, interval.high)
                with np.errstate(divide="ignore", invalid="ignore"):
                    log_ratios = np.log(eers[1] / reference_eers[1])
                result.log_ratio_draws[eval_set] = log_ratios
                finite = log_ratios[np.isfinite(log_ratios)]
                low, high = np.quantile(finite, [0.025, 0.975])
                result.changes[eval_set] = (100 * (eers[0] / reference_eers[0] - 1),
                                            100 * (math.exp(low) - 1), 100 * (math.exp(high) - 1))
    return out


def empty_result(study: LongHorizonStudy, name: str) -> PointResult:
    """A :class:`PointResult` with the emotion and rank numbers of snapshot ``name`` filled in."""
    system = System(name, "")
    emotion = read_emotion(study.eval_folder(system, "emotion"), name)[name]
    cache = embeddings_cache(study.eval_folder(system, "speechocean"), name, "test")
    rank = effective_rank(torch.from_numpy(EmbeddingTable.load(cache).vectors))
    return PointResult({}, {}, {}, {}, emotion["micro_f1"], emotion["micro_f1_std"], rank["rankme"], rank["dims_99"])


@dataclasses.dataclass
class GapTrend:
    """A line through log(EER / EER_reference) against log(minutes), and where it crosses 0."""

    slope: float  # per e-fold of minutes, on the point estimates
    crossing: float  # minutes where the fitted line comes down to 0 (inf: it does not come down)
    crossing_interval: Tuple[float, float]  # 95% over the bootstrap draws
    approaching_share: float  # share of draws whose line falls (the gap shrinks with training)


def gap_trend(points: Sequence[float], results: Dict[float, PointResult], eval_set: str) -> GapTrend:
    """The fitted trend of one system's gap to the reference on ``eval_set`` (see the module)."""
    x = np.log(np.asarray(points, dtype=np.float64))
    point_ratios = np.log(1 + np.array([results[p].changes[eval_set][0] for p in points]) / 100)
    draws = np.stack([results[p].log_ratio_draws[eval_set] for p in points], axis=1)  # [B, P]
    draws = draws[np.isfinite(draws).all(axis=1)]
    slope, intercept = np.polyfit(x, point_ratios, 1)
    slopes, intercepts = np.polyfit(x, draws.T, 1)
    crossings = crossing_minutes(slopes, intercepts, points[-1])
    low, high = np.quantile(crossings, [0.025, 0.975])
    return GapTrend(float(slope), float(crossing_minutes(np.array([slope]), np.array([intercept]), points[-1])[0]),
                    (float(low), float(high)), float(np.mean(slopes < 0)))


def crossing_minutes(slopes: np.ndarray, intercepts: np.ndarray, last: float) -> np.ndarray:
    """Minutes at which the line ``intercept + slope * log(minutes)`` (a log EER ratio against the
    reference) comes down to 0: the system stops being worse than the reference.

    A falling line crosses at ``exp(-intercept / slope)`` (at or before ``last`` when it is already
    at or below 0 there). A flat or rising line never comes down: inf where it is above 0 at
    ``last``, 0 where it is already at or below 0 (the system is not worse)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        crossing = np.exp(-intercepts / slopes)
    above_at_last = intercepts + slopes * np.log(last) > 0
    return np.where(slopes < 0, crossing, np.where(above_at_last, np.inf, 0.0))


def minutes_text(minutes: float) -> str:
    """``"1.2 h"``, ``"3.4 days"``, ``"never"`` for a gap that does not close, ``"0 min"`` for one
    that is already closed."""
    if not np.isfinite(minutes):
        return "never"
    if minutes > 1000 * 1440.0:
        return "beyond 1,000 days"
    for unit, size in (("days", 1440.0), ("h", 60.0)):
        if minutes >= size:
            return f"{minutes / size:.3g} {unit}"
    return f"{minutes:.3g} min"


def report(study: LongHorizonStudy, draws: int) -> None:
    """Tables, figures, the gap fit and the default rule into the results file and BENCHMARKS.md."""
    plans = {system: [Part(**{**part, "snapshots": [tuple(pair) for pair in part["snapshots"]]})
                      for part in read_json(study.folder(folder_name(system), "plan.json"))] for system in SYSTEMS}
    compared = [DINO, WARM_START]
    results = point_results(study, [REFERENCE, *compared], draws)
    anchor = System(point_name(REFERENCE, study.args.points[0]), "")
    baseline_f1 = {name: read_emotion(study.eval_folder(anchor, "emotion"), anchor.name)[name] for name in BASELINES}
    baseline_eers = {name: {s: read_verification(study.eval_folder(anchor, s), anchor.name)[name]["raw"]["EER"] for s in SETS}
                     for name in BASELINES}
    header = ["system", "minutes (step)", *(f"EER % {EVAL_SETS[s]} [95%]; change vs contrastive [95%]" for s in SETS),
              "emotion micro-F1 % ± std", "RankMe", "dims 99%"]
    rows = [[name, "-", *(f"{baseline_eers[name][s]:.2f}" for s in SETS),
             f"{baseline_f1[name]['micro_f1']:.1f} ± {baseline_f1[name]['micro_f1_std']:.1f}", "-", "-"] for name in BASELINES]
    for system in [REFERENCE, *compared]:
        for point in study.args.points:
            result = results[system][point]
            part_index, step = next((i, part.step_at(point)) for i, part in enumerate(plans[system])
                                    if part.step_at(point) is not None)
            cells = []
            for eval_set in SETS:
                low, high = result.intervals[eval_set]
                text = f"{result.eers[eval_set]:.2f} [{low:.1f}, {high:.1f}]"
                if system != REFERENCE:
                    value, c_low, c_high = result.changes[eval_set]
                    mark = " \\*" if c_high < 0 or c_low > 0 else ""
                    text += f"; {value:+.0f}% [{c_low:+.0f}, {c_high:+.0f}]{mark}"
                cells.append(text)
            rows.append([system, f"{point:g} (part {part_index + 1}, step {step})", *cells,
                         f"{result.micro_f1:.1f} ± {result.micro_f1_std:.1f}", f"{result.rankme:.1f}", f"{result.dims_99:.0f}"])
    trends = {eval_set: gap_trend(study.args.points, results[DINO], eval_set) for eval_set in SETS}
    trend_lines = [
        f"- {EVAL_SETS[s]}: slope {t.slope:+.3f} per e-fold of minutes; the line comes down to 0 at "
        f"{minutes_text(t.crossing)} (95% over speaker draws: {minutes_text(t.crossing_interval[0])} to "
        f"{minutes_text(t.crossing_interval[1])}); the gap shrinks in {100 * t.approaching_share:.0f}% of the draws."
        for s, t in trends.items()
    ]
    last = study.args.points[-1]
    verdicts = default_rule(results, last)
    figure = gap_figure(study.args.points, results, trends, os.path.join(FIGURES, "long_horizon_gap.png"))
    curves = curves_figure(study.args.points, results, baseline_f1, os.path.join(FIGURES, "long_horizon_curves.png"))
    plan_lines = [
        f"- {system}: " + "; then ".join(
            f"{part.hparams_file[part.hparams_file.rindex('hparams' + os.sep):]} for {part.epochs} epochs ({part.steps} steps at "
            f"{part.step_seconds:.2f} s = {part.steps * part.step_seconds / 60:.1f} min)" for part in plans[system])
        for system in SYSTEMS
    ]
    block = "\n".join([
        "Command: `python -m bench.long_horizon --systems ...` (one per core) then `--report`  ",
        f"Date: {datetime.date.today().isoformat()}; machine: {machine()}; one torch thread per training, "
        f"two trainings at a time, each pinned to its own core. Schedules set for {study.args.minutes:g} minutes "
        f"at the step times measured here; the points are snapshots of those schedules (not shorter runs). "
        f"Seeds 1986 (training), 0 (trials, {draws} speaker-bootstrap draws).",
        "",
        *plan_lines,
        "",
        *markdown_table(header, rows),
        "",
        "\\* the paired 95% interval of the change against contrastive at the same point excludes 0.",
        "",
        f"Trend of paper DINO's gap to contrastive (a line through log EER ratio against log minutes, "
        f"points {', '.join(f'{p:g}' for p in study.args.points)}; its uncertainty is the speaker sampling "
        f"of the test sets only, one training seed per system):",
        "",
        *trend_lines,
        "",
        *verdicts,
        "",
        f"![gap to contrastive]({os.path.relpath(figure, REPO)})",
        "",
        f"![learning curves]({os.path.relpath(curves, REPO)})",
    ])
    publish("long_horizon", block)


def default_rule(results: Dict[str, Dict[float, PointResult]], point: float) -> List[str]:
    """The label-free default at ``point``: among the systems not worse than contrastive beyond
    the noise on any speaker set, the one best on emotion."""
    eligible = [REFERENCE] + [system for system in (DINO, WARM_START)
                              if all(results[system][point].changes[s][1] <= 0 for s in SETS)]
    winner = max(eligible, key=lambda system: results[system][point].micro_f1)
    return [
        f"Default rule (at {point:g} minutes): a system qualifies when no speaker set shows it worse than "
        "contrastive beyond the noise (the lower end of its paired interval at or below 0); of those, the best "
        f"emotion micro-F1 wins. Qualifying: {', '.join(eligible)}. Winner: **{winner}** "
        f"({results[winner][point].micro_f1:.1f} micro-F1).",
    ]


def gap_figure(points: Sequence[float], results: Dict[str, Dict[float, PointResult]], trends: Dict[str, GapTrend],
               path: str) -> str:
    """The relative EER change against contrastive per set, with intervals and DINO's fitted line."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4))
    for index, eval_set in enumerate(SETS):
        axes = figure.add_subplot(1, len(SETS), index + 1)
        for offset, system in ((0.97, DINO), (1.03, WARM_START)):
            values = np.array([results[system][p].changes[eval_set] for p in points])
            axes.errorbar(np.asarray(points) * offset, values[:, 0], yerr=[values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]],
                          marker="o", capsize=3, label=system)
        trend = trends[eval_set]
        span = np.geomspace(points[0], max(points[-1] * 4, min(trend.crossing, points[-1] * 50)) if np.isfinite(trend.crossing)
                            else points[-1] * 4, 50)
        x = np.log(np.asarray(points, dtype=np.float64))
        ratios = np.log(1 + np.array([results[DINO][p].changes[eval_set][0] for p in points]) / 100)
        slope, intercept = np.polyfit(x, ratios, 1)
        axes.plot(span, 100 * (np.exp(intercept + slope * np.log(span)) - 1), "--", color="C0", alpha=0.6,
                  label=f"DINO trend (crosses 0: {minutes_text(trend.crossing)})")
        axes.axhline(0, color="gray", linewidth=0.8)
        minute_axis(axes, points)
        axes.set_ylabel("EER change vs contrastive, %")
        axes.set_title(EVAL_SETS[eval_set], fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def curves_figure(points: Sequence[float], results: Dict[str, Dict[float, PointResult]],
                  baseline_f1: Dict[str, Dict], path: str) -> str:
    """EER per set and emotion micro-F1 against training minutes, one line per system."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16, 4))
    for index, eval_set in enumerate([*SETS, "emotion"]):
        axes = figure.add_subplot(1, len(SETS) + 1, index + 1)
        for system, values in results.items():
            if eval_set == "emotion":
                means = np.array([values[p].micro_f1 for p in points])
                spreads = np.array([values[p].micro_f1_std for p in points])
                axes.errorbar(points, means, yerr=spreads, marker="o", capsize=3, label=system)
            else:
                eers = np.array([values[p].eers[eval_set] for p in points])
                intervals = np.array([values[p].intervals[eval_set] for p in points])
                axes.errorbar(points, eers, yerr=[eers - intervals[:, 0], intervals[:, 1] - eers], marker="o",
                              capsize=3, label=system)
        if eval_set == "emotion":
            axes.axhline(baseline_f1["random_init"]["micro_f1"], linestyle=":", color="gray", label="random init")
            axes.set_ylabel("micro-F1 % (4 actor folds, ± std)")
            axes.set_title("Emotion, RAVDESS 17-24", fontsize=10)
        else:
            axes.set_ylabel("EER % (95% speaker interval)")
            axes.set_title(EVAL_SETS[eval_set], fontsize=10)
        minute_axis(axes, points)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def minute_axis(axes, points: Sequence[float]) -> None:
    """A log axis of training minutes labelled at the snapshot points."""
    axes.set_xscale("log")
    axes.set_xticks(list(points))
    axes.set_xticklabels([f"{point:g}" for point in points])
    axes.minorticks_off()
    axes.set_xlabel("training minutes (log)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="*", default=[], help=f"systems to train and evaluate: {list(SYSTEMS)}")
    parser.add_argument("--report", action="store_true", help="build the report from the evaluated snapshots")
    parser.add_argument("--minutes", type=float, default=80.0, help="the schedule every system is planned for")
    parser.add_argument("--points", type=float, nargs="*", default=[5, 10, 20, 40, 60, 80], help="snapshot minutes")
    parser.add_argument("--draws", type=int, default=1000, help="speaker-bootstrap draws")
    parser.add_argument("--output_folder", default=os.path.join(REPO, "bench", "work", "long_horizon"))
    args = parser.parse_args()
    unknown = [name for name in args.systems if name not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    args.gpu = False
    study = LongHorizonStudy(args)
    study.data = prepare_study_data(SHARED_DATA, study.folder("data"))
    for system in args.systems:
        parts = study.train_system(system)
        for index, point in enumerate(args.points):
            baselines = BASELINES if system == REFERENCE and index == 0 else ()
            study.evaluate(study.snapshot(system, point, parts), baselines)
    if args.report:
        report(study, args.draws)


if __name__ == "__main__":
    main()
