"""What the real-speech studies share: systems, the stages of a study, its evaluation sets, the
pipeline's pseudo-label rounds, and the learning curves and folder names of their reports.

A :class:`Study` runs every stage through the stage API
(:class:`~speechbrain_dino.pipeline.stages.StageRunner`) into its own output folder, on the sets of
:mod:`bench.study_data`; each script subclasses it for its own study or uses it as it is.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from bench.budget import epochs_for_budget, plain_values, seconds_per_step
from bench.common import REPO
from bench.study_data import StudyData, assert_unseen
from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.inference.baselines import embeddings_cache
from speechbrain_dino.inference.embeddings import EmbeddingTable
from speechbrain_dino.inference.export import read_metadata
from speechbrain_dino.pipeline.rounds import RoundSettings
from speechbrain_dino.pipeline.stages import StageRunner, StageUsage, read_json, read_verification
from speechbrain_dino.training.rank_monitor import effective_rank
from speechbrain_dino.verification.evaluation import score_file

#: The small presets the CPU studies train with.
DEMO_HPARAMS = os.path.join(HPARAMS_FOLDER, "demo")
VERIFICATION_YAML = os.path.join(HPARAMS_FOLDER, "verification.yaml")
EMOTION_YAML = os.path.join(HPARAMS_FOLDER, "emotion.yaml")
#: The pipeline whose pretraining and rounds the studies run (its CPU version).
PIPELINE_YAML = os.path.join(DEMO_HPARAMS, "pipeline.yaml")
#: The share of each round's cluster members held out by the studies that measure the round gate
#: (the pipelines' ``round_gate: {heldout_share: 0.2}``, which they leave off by default).
GATE_SHARE = 0.2
#: The held-out verification sets (StudyData's ``<name>_test_csv`` and ``<name>_trials``) and their labels.
EVAL_SETS = {
    "ravdess": "RAVDESS 17-24",
    "librispeech": "LibriSpeech halves",
    "speechocean": "speechocean762 (25 speakers)",
}
DISPLAY_NAMES = {"mfcc_stats": "MFCC statistics (mean+std, standardised)", "random_init": "random-init ECAPA"}


@dataclasses.dataclass
class System:
    """A trained system: its exported encoder and what its training cost."""

    name: str
    pretrained: str
    epochs: Optional[int] = None
    steps: Optional[int] = None
    train_minutes: Optional[float] = None
    clustering: Optional[Dict] = None

    def after(self, first: "System") -> "System":
        """This system as the second part of a two-part training whose first part was ``first``:
        epochs, steps and minutes count both parts."""
        return dataclasses.replace(
            self, epochs=(first.epochs or 0) + (self.epochs or 0), steps=(first.steps or 0) + (self.steps or 0),
            train_minutes=(first.train_minutes or 0.0) + (self.train_minutes or 0.0),
        )


def presets(gpu: bool) -> Dict[str, str]:
    """The training presets: the small CPU ones, or the full-size ones with ``--gpu``."""
    folder = HPARAMS_FOLDER if gpu else DEMO_HPARAMS
    return {
        name: os.path.join(folder, f"{name}.yaml")
        for name in ("dino_ecapa", "contrastive_ecapa", "train_aam", "pseudo_label", "pipeline")
    }


def slug(name: str) -> str:
    """A lower-case folder name for a system name (``"SDPN + contrastive term"`` -> ``sdpn_contrastive_term``)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def folder_name(name: str) -> str:
    """A system's folder under ``eval/`` (and a training's): its name with ``_`` for spaces."""
    return name.replace(" ", "_")


def pipeline_round_settings(pipeline_yaml: str = PIPELINE_YAML, **changes: Any) -> RoundSettings:
    """The pseudo-label rounds of a pipeline YAML (:meth:`RoundSettings.from_pipeline` on its plain
    values), its stage YAMLs as absolute paths; ``changes`` replace settings (a study's own: e.g.
    ``gate_share``)."""
    settings = RoundSettings.from_pipeline(plain_values(pipeline_yaml))
    paths = {key: os.path.join(REPO, getattr(settings, key))
             for key in ("pseudo_label_hparams", "aam_hparams", "verification_hparams")}
    return dataclasses.replace(settings, **{**paths, **changes})


def recorded_epochs(aam_folder: str) -> int:
    """The epochs an AAM fine-tuning ran (recorded in its export's metadata; with
    ``examples_per_class``, those the clusters gave)."""
    return int(read_metadata(os.path.join(aam_folder, "pretrained"))["number_of_epochs"])


def learning_curve(train_log: str) -> List[Tuple[int, float]]:
    """(optimiser steps, validation EER) per epoch of a training log."""
    points = []
    for line in open(train_log, encoding="utf-8"):
        steps, eer = re.search(r"steps: (\d+)", line), re.search(r"valid EER: ([0-9.e+-]+)", line)
        if steps and eer:
            points.append((int(steps.group(1)), float(eer.group(1))))
    return points


def split_and_merge(truth: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Over the kept rows (label >= 0): clusters per true speaker and speakers per cluster (means)."""
    kept = labels >= 0
    pairs = {(t, c) for t, c in zip(truth[kept], labels[kept])}
    speakers = {t for t, _ in pairs}
    clusters = {c for _, c in pairs}
    return {
        "clusters_per_speaker": len(pairs) / max(len(speakers), 1),
        "speakers_per_cluster": len(pairs) / max(len(clusters), 1),
        "speakers_found": len(speakers),
    }


class Study:
    """Runs a study's stages into ``args.output_folder`` and gathers what its report needs.

    ``args`` has ``output_folder``, ``gpu`` (full-size presets on ``cuda:0``) and, for budgeted
    trainings, ``budget`` (minutes per run). :attr:`data` is set by the script
    (:func:`bench.study_data.prepare_study_data`).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.output = os.path.abspath(args.output_folder)
        self.presets = presets(args.gpu)
        self.run_options = ["--device=cuda:0"] if args.gpu else []
        self.stage_usage: Dict[str, Dict[str, float]] = (
            read_json(self.usage_path) if os.path.isfile(self.usage_path) else {}
        )
        self.stages = StageRunner(self.run_options, on_usage=self.record_usage)
        self.step_seconds: Dict[str, float] = {}
        self.data: Optional[StudyData] = None

    def folder(self, *parts: str) -> str:
        """A path inside the study's output folder."""
        return os.path.join(self.output, *parts)

    @property
    def usage_path(self) -> str:
        """Where the stages' costs are kept, so that a resumed study still reports them."""
        return self.folder("stage_usage.json")

    def record_usage(self, name: str, usage: StageUsage) -> None:
        """Keeps (on disk too) the wall minutes and peak memory of the stage ``name``."""
        self.stage_usage[name] = {"minutes": usage.seconds / 60, "peak_rss_gb": usage.peak_rss_gb}
        os.makedirs(self.output, exist_ok=True)
        with open(self.usage_path, "w", encoding="utf-8") as fout:
            json.dump(self.stage_usage, fout, indent=1)

    def check_labels(self, csv_path: str) -> None:
        """Asserts that a pseudo-labelled manifest holds no evaluation file."""
        assert_unseen(csv_path, self.data, labelled=False)

    # ------------------------------------------------------------- training
    def calibrate(self, key: str, recipe: str, hparams_file: str, overrides: Dict) -> float:
        """Seconds per training step of one kind of run (measured once, then cached on disk)."""
        path = self.folder("calibration", f"{key}.json")
        if not os.path.isfile(path):
            seconds, peak_gb = seconds_per_step(
                recipe, hparams_file, overrides, self.folder("calibration", key), self.run_options
            )
            with open(path, "w", encoding="utf-8") as fout:
                json.dump({"seconds_per_step": seconds, "peak_rss_gb": peak_gb}, fout)
        self.step_seconds[key] = read_json(path)["seconds_per_step"]
        return self.step_seconds[key]

    def planned_epochs(self, key: str, hparams_file: str, train_csv: str) -> int:
        """Epochs of ``train_csv`` that fit the budget at the measured step time of ``key``."""
        batch_size = plain_values(hparams_file)["batch_size"]
        return epochs_for_budget(self.args.budget, self.step_seconds[key], len(read_manifest(train_csv)), batch_size)

    def trained_system(self, name: str, folder: str, epochs: int, hparams_file: str, train_csv: str,
                       stage: Optional[str] = None) -> System:
        """A :class:`System` for a finished training folder, with the measured cost of its stage
        (``stage``, else ``<name> pretraining`` or ``<name> fine-tuning``: the name of a round's
        fine-tuning before the rounds ran through the pipeline's, in an earlier study's records)."""
        stages = [*([stage] if stage else []), f"{name} pretraining", f"{name} fine-tuning"]
        usage = next((self.stage_usage[key] for key in stages if key in self.stage_usage), {})
        steps = epochs * max(1, len(read_manifest(train_csv)) // plain_values(hparams_file)["batch_size"])
        return System(name, os.path.join(folder, "pretrained"), epochs, steps, usage.get("minutes"))

    # ----------------------------------------------------------- evaluation
    def evaluate_sets(self, system: System, baselines: Sequence[str]) -> None:
        """Verification of ``system`` (and ``baselines``) on the held-out sets, into ``eval/<system>/<set>``."""
        for eval_set in EVAL_SETS:
            self.stages.verification(
                VERIFICATION_YAML, system.pretrained, getattr(self.data, f"{eval_set}_test_csv"),
                getattr(self.data, f"{eval_set}_trials"), self.eval_folder(system, eval_set), system.name, baselines,
                name=f"{system.name}: verification ({eval_set})",
            )

    def evaluate(self, system: System, baselines: Sequence[str]) -> None:
        """:meth:`evaluate_sets`, and emotion recognition on the RAVDESS folds into ``eval/<system>/emotion``."""
        self.evaluate_sets(system, baselines)
        self.stages.emotion(
            EMOTION_YAML, system.pretrained, self.data.ravdess_test_csv, self.eval_folder(system, "emotion"),
            system.name, baselines, overrides={"protocol": "speaker_kfold", "folds": 4},
        )

    def eval_folder(self, system: System, *parts: str) -> str:
        """Where ``system`` and the baselines evaluated with it are evaluated (``eval/<name>/``)."""
        return self.folder("eval", folder_name(system.name), *parts)

    def score_file(self, system: System, eval_set: str, evaluated_with: Optional[System] = None) -> str:
        """Per-trial raw score file of ``system`` on ``eval_set``."""
        return score_file(self.eval_folder(evaluated_with or system, eval_set), system.name, "raw")

    def row(self, system: System, evaluated_with: Optional[System] = None) -> Dict:
        """EER per held-out set and the effective rank of the held-out speechocean embeddings (NaN
        when not cached); a baseline's are read from ``evaluated_with``'s folder."""
        owner = evaluated_with or system
        row: Dict = {"system": system.name}
        for eval_set in EVAL_SETS:
            raw = read_verification(self.eval_folder(owner, eval_set), owner.name)[system.name]["raw"]
            row[eval_set] = raw["EER"]
        cache = embeddings_cache(self.eval_folder(owner, "speechocean"), system.name, "test")
        nan = {"rankme": float("nan"), "dims_99": float("nan")}
        row.update(effective_rank(torch.from_numpy(EmbeddingTable.load(cache).vectors)) if os.path.isfile(cache) else nan)
        return row
