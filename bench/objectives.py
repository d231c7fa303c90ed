#!/usr/bin/env python3
"""The label-free objectives at one budget: which self-supervised training gives the best embedding.

    python -m bench.objectives [--budget 5] [--systems NAME ...] [--output_folder bench/work/objectives]

Every system trains on the study pool (bench.study_data: RAVDESS 1-16, LibriSpeech readers not
held out, 83 speechocean762 speakers) for the same wall-clock budget, planned in steps from its
own measured step time (bench.budget), with the development speakers' EER logged every epoch
(learning curves). Each is then evaluated on the three held-out sets: RAVDESS actors 17-24,
LibriSpeech half-utterance trials, and 25 speechocean762 speakers (text-independent). The table
gives the EERs, the step time against paper DINO's, and the effective rank of the held-out
speechocean embeddings (RankMe and the components for 99% of the variance). Systems:

- the baselines: MFCC statistics, the untrained encoder;
- the contrastive baseline (NT-Xent) of ``hparams/demo/contrastive_ecapa.yaml``;
- DINO with the paper's settings at small scale (babble shared by the views, as before release 0.2);
- that DINO with each small-budget fix alone (see :data:`bench.systems.SYSTEMS`);
- the regularised DINO family: RDINO, SDPN, DINO + student-teacher cosine, SDPN + a contrastive
  term (as C3-DINO combines the two), and SDPN started from a contrastive model trained for half
  the budget (a warm start: both halves count against the budget).

Results go to ``bench/results/objectives_<budget>min.md`` and the BENCHMARKS.md block
``objectives_<budget>min``; the learning-curve figure to ``bench/results/figures/``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from bench.budget import remaining_share
from bench.common import FIGURES, REPO, SHARED_DATA, command_line, machine, markdown_table, publish
from bench.study import DEMO_HPARAMS, EVAL_SETS, Study, System, learning_curve, slug
from bench.study_data import prepare_study_data
from bench.systems import PAPER_DINO_SYSTEM, SYSTEMS, WARM_STARTS
from speechbrain_dino.inference.baselines import BASELINES

#: Systems on paper DINO's preset (its crops and network), planned from its measured step time (their
#: changes cost nothing per step, and a 5-minute plan is whole epochs: the same steps either way).
TIMED_AS_PAPER_DINO = [name for name, (preset, _) in SYSTEMS.items()
                       if preset == SYSTEMS[PAPER_DINO_SYSTEM][0] and name != PAPER_DINO_SYSTEM]


class ObjectivesStudy(Study):
    """:class:`~bench.study.Study` for self-supervised objectives, each validated on the development speakers."""

    def calibrate_systems(self, names: Sequence[str]) -> None:
        """Measures the step time of every system in ``names`` (and of paper DINO, the speed unit)
        before any training, one after another, so that all ratios come from one quiet stretch of
        the run and later work on the machine cannot skew the plan."""
        for name in dict.fromkeys([PAPER_DINO_SYSTEM, *names]):
            if name in TIMED_AS_PAPER_DINO:
                continue
            preset, overrides = SYSTEMS[name]
            self.calibrate(slug(name), "train_dino", os.path.join(DEMO_HPARAMS, preset),
                           {"train_csv": self.data.pretrain_csv, **overrides})

    def train(self, name: str, preset: str, overrides: Mapping, budget_share: float = 1.0,
              init_from: Optional[str] = None, timed_as: Optional[str] = None) -> System:
        """Trains ``name`` from ``hparams/demo/<preset>`` with ``overrides`` for its share of the budget,
        planned from the step time of ``timed_as`` (a :data:`SYSTEMS` name; default ``name``)."""
        hparams_file = os.path.join(DEMO_HPARAMS, preset)
        timing = slug(timed_as or name)
        base = {"train_csv": self.data.pretrain_csv, **overrides}
        if init_from:
            base["init_from"] = init_from
        if timing not in self.step_seconds:
            self.calibrate(timing, "train_dino", hparams_file, base)
        if self.args.epochs:  # an equal number of steps instead of equal minutes
            epochs = max(1, round(self.args.epochs * budget_share))
        else:
            epochs = max(1, round(self.planned_epochs(timing, hparams_file, self.data.pretrain_csv) * budget_share))
        folder = self.folder(slug(name))
        run = {**base, "number_of_epochs": epochs, "valid_csv": self.data.dev_csv, "valid_trials": self.data.dev_trials}
        run.pop("train_csv")
        self.stages.train_dino(hparams_file, self.data.pretrain_csv, folder, run, name=f"{name} pretraining")
        return self.trained_system(name, folder, epochs, hparams_file, self.data.pretrain_csv)


def training_curve(system: System, started_from: Optional[System] = None) -> List[Tuple[int, float]]:
    """(step, development EER) of ``system``'s training; a warm start's continues the curve of the
    run it ``started_from``, its steps counted after that run's."""
    curve = learning_curve(os.path.join(os.path.dirname(system.pretrained), "train_log.txt"))
    if started_from is None:
        return curve
    return training_curve(started_from) + [(step + started_from.steps, eer) for step, eer in curve]


def curves_figure(curves: Mapping[str, List[Tuple[int, float]]], path: str, title: str) -> str:
    """Development-set EER against training step, one line per system; returns ``path``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    for name, points in curves.items():
        if points:
            steps, eers = zip(*points)
            axes.plot(steps, eers, marker="o", markersize=3, label=name)
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("EER % (17 development speakers)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def results_table(rows: Sequence[Dict], systems: Mapping[str, System], step_seconds: Mapping[str, float]) -> List[str]:
    """The Markdown table of the study."""
    paper = step_seconds.get(slug(PAPER_DINO_SYSTEM))
    header = ["system", "train min (epochs, steps)", "step s (x paper DINO)",
              *(f"EER % {label}" for label in EVAL_SETS.values()), "RankMe", "dims for 99%"]
    body = []
    for row in rows:
        system = systems.get(row["system"])
        cost = speed = "-"
        if system is not None and system.epochs:
            minutes = f"{system.train_minutes:.1f}" if system.train_minutes else "-"
            cost = f"{minutes} ({system.epochs}, {system.steps})"
            seconds = step_seconds.get(slug(row["system"]))
            if seconds:
                speed = f"{seconds:.2f}" + (f" ({seconds / paper:.2f}x)" if paper else "")
        body.append([row["system"], cost, speed, *(f"{row[key]:.2f}" for key in EVAL_SETS),
                     *("-" if row[key] != row[key] else f"{row[key]:.{digits}f}" for key, digits in (("rankme", 1), ("dims_99", 0)))])
    return markdown_table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=5.0, help="minutes per training run")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train every system this many epochs of the pool instead (equal steps; for a "
                             "machine shared with other work, where measured step times are not the systems' own)")
    parser.add_argument("--systems", nargs="*", default=None,
                        help=f"systems to run (default all): {', '.join([*SYSTEMS, *WARM_STARTS])}")
    parser.add_argument("--output_folder", default=None, help="default bench/work/objectives_<budget>min")
    parser.add_argument("--pretrained", nargs="*", default=None, metavar="NAME=FOLDER",
                        help="evaluate these exported encoders (trained elsewhere on the study pool) instead of training")
    args = parser.parse_args()
    tag = f"objectives_{args.epochs}epochs" if args.epochs else f"objectives_{args.budget:g}min"
    if args.pretrained:
        tag = "objectives_pretrained"
    args.output_folder = args.output_folder or os.path.join(REPO, "bench", "work", tag)
    args.gpu = False
    chosen = args.systems or [*SYSTEMS, *WARM_STARTS]
    unknown = [name for name in chosen if name not in SYSTEMS and name not in WARM_STARTS]
    if unknown:
        parser.error(f"unknown systems {unknown}")
    started = datetime.datetime.now()
    study = ObjectivesStudy(args)
    study.data = prepare_study_data(SHARED_DATA, study.folder("data"))
    trained: Dict[str, System] = {}
    first_halves: Dict[str, System] = {}  # warm start -> the run its second half started from
    for item in args.pretrained or []:
        name, folder = item.split("=", 1)
        trained[name] = System(name, folder)
    if not args.pretrained:
        study.calibrate_systems([part for name in chosen for part in WARM_STARTS.get(name, (name,))])
    for name in ([] if args.pretrained else chosen):
        if name in SYSTEMS:
            timed_as = PAPER_DINO_SYSTEM if name in TIMED_AS_PAPER_DINO else None
            trained[name] = study.train(name, *SYSTEMS[name], timed_as=timed_as)
        else:
            first, second = WARM_STARTS[name]
            start = first_halves[name] = study.train(f"{first} (first half)", *SYSTEMS[first], budget_share=0.5,
                                                     timed_as=first)
            rest = 0.5 if args.epochs else remaining_share(args.budget, start.steps, study.step_seconds[slug(first)])
            trained[name] = study.train(name, *SYSTEMS[second], budget_share=rest, init_from=start.pretrained,
                                        timed_as=second).after(start)  # the table counts both halves
    anchor = next(iter(trained.values()))
    study.evaluate_sets(anchor, BASELINES)
    for system in trained.values():
        if system is not anchor:
            study.evaluate_sets(system, ())
    rows = [study.row(System(name, ""), evaluated_with=anchor) for name in BASELINES]
    rows += [study.row(system) for system in trained.values()]
    with open(study.folder("rows.json"), "w", encoding="utf-8") as fout:
        json.dump(rows, fout, indent=1)
    curves = {name: training_curve(system, first_halves.get(name)) for name, system in trained.items()}
    figure = curves_figure(curves, os.path.join(FIGURES, f"{tag}_curves.png"),
                           "Development EER during training"
                           + ("" if args.pretrained else f" ({tag.split('_', 1)[1]} per system)"))
    header = [
        f"Command: `{command_line('objectives')}`  ",
        f"Date: {started.date().isoformat()}; machine: {machine()}; wall time "
        f"{(datetime.datetime.now() - started).total_seconds() / 60:.0f} min.  ",
        ("Encoders trained elsewhere on the study pool (named by their settings)" if args.pretrained else
         f"Budget {args.epochs} epochs of the pool per system (equal steps)" if args.epochs else
         f"Budget {args.budget:g} min of training per system, planned in steps from each system's measured step time")
        + "; seeds 1986 (training), 0 (trials). Effective rank: of the 250 held-out speechocean762 embeddings.",
        "",
    ]
    block = "\n".join(header + results_table(rows, trained, study.step_seconds)
                      + ["", f"![learning curves]({os.path.relpath(figure, REPO)})"])
    publish(tag, block, "\nLearning curves (steps, dev EER):\n\n```\n" + json.dumps(curves) + "\n```\n")


if __name__ == "__main__":
    main()
