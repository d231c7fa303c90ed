"""The whole method as one resumable run: DINO -> R x (pseudo-label -> AAM) -> evaluations.

Each stage is its recipe, run as a subprocess in its own folder under the pipeline's output
folder, so that a stage behaves exactly as when a user runs it by hand (seeding, logging,
checkpoints, DDP). A stage whose outputs exist is skipped; an interrupted training stage is simply
run again and resumes from its last checkpoint. The results of all stages are gathered into one
table (JSON and Markdown).

Layout of ``output_folder``::

    data/            train.csv, test.csv, trials.txt (the synthetic corpus too, when generated)
    dino/            DINO training (pretrained/ at the end)
    dino_eval/       verification/ and emotion/ results of the DINO encoder (+ baselines)
    round1/labels/   pseudo_labels.csv, report.json
    round1/aam/      AAM fine-tuning on them (pretrained/)
    round1/eval/     verification/ and emotion/ results
    ...
    results.json, results.md
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

from speechbrain_dino.errors import DataError
from speechbrain_dino.memory import PeakMemoryMonitor

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(REPO_ROOT, "recipes")

#: Columns of the results table: (key in a row dict, header, format).
COLUMNS = (
    ("system", "system", "{}"),
    ("EER", "EER %", "{:.2f}"),
    ("minDCF_0.01", "minDCF(0.01)", "{:.3f}"),
    ("EER_as_norm", "EER % AS-norm", "{:.2f}"),
    ("nmi", "NMI", "{:.3f}"),
    ("kept_percent", "kept %", "{:.1f}"),
    ("clusters", "clusters", "{}"),
    ("micro_f1", "emotion micro-F1 %", "{:.2f}"),
)


def override_args(overrides: Optional[Mapping[str, Any]]) -> List[str]:
    """``{"a": 1, "b": {"c": 2}}`` -> ``["--a=1", "--b={c: 2}"]`` (SpeechBrain override flags)."""
    args = []
    for key, value in (overrides or {}).items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        args.append(f"--{key}={text}")
    return args


@dataclasses.dataclass(frozen=True)
class StageUsage:
    """What one stage cost: wall seconds and the peak resident memory of its process (GB)."""

    seconds: float
    peak_rss_gb: float


def run_recipe(
    recipe: str, hparams_file: str, overrides: Mapping[str, Any], log_name: str, *extra_args: str
) -> StageUsage:
    """Runs ``recipes/<recipe>`` with ``hparams_file`` and overrides; raises on failure.

    The stage's console output goes to the terminal as it runs (progress bars included). Its wall
    time and peak memory (the recipe process's own high-water mark, sampled while it runs, see
    :mod:`speechbrain_dino.memory`; ``ru_maxrss`` where ``/proc`` is missing) are logged and
    returned. ``extra_args`` are passed as they are (e.g. ``--debug``).
    """
    command = [sys.executable, os.path.join(RECIPES, recipe), hparams_file, *override_args(overrides), *extra_args]
    logger.info("stage %s: %s", log_name, " ".join(command))
    print(f"\n=== {log_name} ===", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    with PeakMemoryMonitor(process.pid) as memory:
        _, status, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    peak_gb = memory.peak_gb if memory.peak_gb is not None else rusage.ru_maxrss / 2**20
    usage = StageUsage(time.perf_counter() - start, peak_gb)
    if process.returncode != 0:
        raise DataError(
            f"stage {log_name} failed (exit {process.returncode}); rerun the pipeline to resume it, "
            f"or run alone: {' '.join(command)}"
        )
    logger.info("stage %s: %.1f min, peak memory %.2f GB", log_name, usage.seconds / 60, usage.peak_rss_gb)
    return usage


def training_done(folder: str) -> bool:
    """True when a training stage has exported ``pretrained/``."""
    return os.path.isfile(os.path.join(folder, "pretrained", "hyperparams.yaml"))


def read_json(path: str) -> Dict[str, Any]:
    """A stage's JSON output."""
    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


class Pipeline:
    """Runs the stages described by a pipeline YAML (see ``hparams/pipeline.yaml``).

    Arguments
    ---------
    hparams : dict
        The loaded pipeline YAML: ``output_folder``, ``rounds``, per-stage ``*_hparams`` files and
        ``*_overrides``, and the data: ``train_csv``, ``test_csv``, ``trials``, ``emotion_csv``;
        optionally ``run_options``, command-line run options for every stage (``--device=cuda:0``).
    """

    def __init__(self, hparams: Dict[str, Any]) -> None:
        self.hparams = hparams
        self.output = os.path.abspath(hparams["output_folder"])
        self.rows: List[Dict[str, Any]] = []
        self.usage: Dict[str, StageUsage] = {}

    def run_stage(self, recipe: str, hparams_file: str, overrides: Mapping[str, Any], name: str) -> None:
        """:func:`run_recipe` with the YAML's ``run_options``; remembers the cost in ``usage[name]``."""
        run_options = [str(option) for option in self.hparams.get("run_options") or []]
        self.usage[name] = run_recipe(recipe, hparams_file, overrides, name, *run_options)

    def folder(self, *parts: str) -> str:
        """A path inside the output folder."""
        return os.path.join(self.output, *parts)

    # ------------------------------------------------------------------ stages
    def train_dino(self) -> str:
        """DINO pretraining on the (unlabelled) training manifest; returns ``pretrained/``."""
        folder = self.folder("dino")
        if not training_done(folder):
            overrides = {
                "train_csv": self.hparams["train_csv"],
                "output_folder": folder,
                **(self.hparams.get("dino_overrides") or {}),
            }
            self.run_stage("train_dino.py", self.hparams["dino_hparams"], overrides, "DINO pretraining")
        return os.path.join(folder, "pretrained")

    def pseudo_label(self, round_index: int, pretrained: str) -> str:
        """Clusters the training corpus with ``pretrained``; returns the labels folder."""
        folder = self.folder(f"round{round_index}", "labels")
        per_round = self.hparams.get("pseudo_label_round_overrides") or []
        overrides = {
            "pretrained_path": pretrained,
            "train_csv": self.hparams["train_csv"],
            "output_folder": folder,
            **(self.hparams.get("pseudo_label_overrides") or {}),
            **(per_round[round_index - 1] if round_index <= len(per_round) else {}),
        }
        self.run_stage("pseudo_label.py", self.hparams["pseudo_label_hparams"], overrides, f"round {round_index}: pseudo-labels")
        return folder

    def train_aam(self, round_index: int, labels_folder: str, init_from: str) -> str:
        """AAM fine-tuning on the round's pseudo-labels; returns its ``pretrained/``."""
        folder = self.folder(f"round{round_index}", "aam")
        if not training_done(folder):
            overrides = {
                "train_csv": os.path.join(labels_folder, "pseudo_labels.csv"),
                "init_from": init_from,
                "output_folder": folder,
                **(self.hparams.get("aam_overrides") or {}),
            }
            self.run_stage("train_aam.py", self.hparams["aam_hparams"], overrides, f"round {round_index}: AAM fine-tuning")
        return os.path.join(folder, "pretrained")

    def evaluate(self, name: str, pretrained: str, folder: str, baselines: Sequence[str]) -> None:
        """Verification and emotion evaluation of ``pretrained`` into ``folder``."""
        verification = os.path.join(folder, "verification")
        if not os.path.isfile(os.path.join(verification, "results.json")):
            overrides = {
                "pretrained_path": pretrained,
                "test_csv": self.hparams["test_csv"],
                "trials": self.hparams["trials"],
                "cohort_csv": self.hparams.get("cohort_csv"),
                "output_folder": verification,
                "system_name": name,
                "baselines": list(baselines),
            }
            self.run_stage("eval_verification.py", self.hparams["verification_hparams"], overrides, f"{name}: verification")
        emotion = os.path.join(folder, "emotion")
        if self.hparams.get("emotion_csv") and not os.path.isfile(os.path.join(emotion, "results.json")):
            overrides = {
                "pretrained_path": pretrained,
                "data_csv": self.hparams["emotion_csv"],
                "output_folder": emotion,
                "system_name": name,
                "baselines": list(baselines),
                **(self.hparams.get("emotion_overrides") or {}),
            }
            self.run_stage("eval_emotion.py", self.hparams["emotion_hparams"], overrides, f"{name}: emotion")
        self.collect(name, folder, baselines)

    # ----------------------------------------------------------------- results
    def collect(self, name: str, folder: str, baselines: Sequence[str]) -> None:
        """Adds the rows of ``name`` (and of its baselines, the first time) to the table."""
        verification = read_json(os.path.join(folder, "verification", "results.json"))
        emotion_path = os.path.join(folder, "emotion", "results.json")
        emotion = read_json(emotion_path) if os.path.isfile(emotion_path) else {}
        # results.json holds the evaluated system's metrics at top level, baselines nested
        systems = {
            baseline: (verification["baselines"][baseline], emotion.get("baselines", {}).get(baseline))
            for baseline in baselines
        }
        main = {"raw": verification, **({"as_norm": verification["as_norm"]} if "as_norm" in verification else {})}
        systems[name] = (main, emotion or None)
        for system, (metrics, emotion_metrics) in systems.items():
            self.rows.append(_table_row(system, metrics, emotion_metrics))

    def add_clustering(self, round_index: int, labels_folder: str) -> None:
        """Puts the round's clustering quality on the row of the model that follows it."""
        report = read_json(os.path.join(labels_folder, "report.json"))
        row = self.rows[-1]
        row["clusters"] = report["clusters_after_filtering"]
        row["kept_percent"] = 100.0 * report["kept_fraction"]
        metrics = report.get("metrics") or {}
        if metrics.get("kept"):
            row["nmi"] = metrics["kept"]["nmi"]

    def write_table(self) -> str:
        """Writes ``results.json`` and ``results.md``; returns the Markdown table."""
        header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
        rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
        lines = [header, rule]
        for row in self.rows:
            cells = [fmt.format(row[key]) if row.get(key) is not None else "" for key, _, fmt in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        table = "\n".join(lines)
        with open(self.folder("results.json"), "w", encoding="utf-8") as fout:
            json.dump(self.rows, fout, indent=2)
        with open(self.folder("results.md"), "w", encoding="utf-8") as fout:
            fout.write(table + "\n")
        return table

    def run(self) -> str:
        """All stages in order; returns the results table (Markdown)."""
        baselines = list(self.hparams.get("baselines") or [])
        pretrained = self.train_dino()
        self.evaluate("DINO", pretrained, self.folder("dino_eval"), baselines)
        for round_index in range(1, int(self.hparams["rounds"]) + 1):
            labels = self.pseudo_label(round_index, pretrained)
            pretrained = self.train_aam(round_index, labels, pretrained)
            self.evaluate(f"round {round_index}", pretrained, self.folder(f"round{round_index}", "eval"), [])
            self.add_clustering(round_index, labels)
        return self.write_table()


def _table_row(
    system: str, verification: Mapping[str, Any], emotion: Optional[Mapping[str, Any]]
) -> Dict[str, Any]:
    """A table row from a system's verification metrics (``raw``[, ``as_norm``]) and emotion ones."""
    row = {"system": system, "EER": verification["raw"]["EER"], "minDCF_0.01": verification["raw"]["minDCF_0.01"]}
    if "as_norm" in verification:
        row["EER_as_norm"] = verification["as_norm"]["EER"]
    if emotion:
        row["micro_f1"] = emotion["micro_f1"]
    return row
