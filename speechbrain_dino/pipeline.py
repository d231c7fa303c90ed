"""The whole method as one resumable run: [warm start ->] pretraining -> R x (pseudo-label -> AAM) -> evaluations.

Each stage runs through the stage API (:mod:`speechbrain_dino.stages`): its recipe in its own
process and folder under the pipeline's output folder, skipped when its outputs exist, resumed
from its last checkpoint when it was interrupted. The results of all stages are gathered into one
table (JSON and Markdown).

Layout of ``output_folder``::

    data/            train.csv, test.csv, trials.txt (the synthetic corpus too, when generated)
    warm_start/      with ``warm_start_hparams``: a first pretraining that initialises the
                     student of the next one (e.g. the contrastive baseline; pretrained/ at the end)
    pretraining/     the self-supervised training of ``pretraining_hparams`` (DINO, or another
                     objective of the DINO family; pretrained/)
    pretraining_eval/ verification/ and emotion/ results of that encoder (+ baselines)
    round1/labels/   pseudo_labels.csv, report.json
    round1/gate/     with ``round_gate``: the members held out of the fine-tuning, their trials,
                     both encoders' verification on them and decision.json
    round1/aam/      AAM fine-tuning on them (pretrained/)
    round1/eval/     verification/ and emotion/ results
    ...
    results.json, results.md, final_encoder.txt (the pretrained/ folder the run ends with)

With ``round_gate`` (:mod:`speechbrain_dino.pseudo_labels.round_gate`), a round whose encoder is
not better than the previous one on its held-out cluster members is rejected: it is still
evaluated (its row says so), the previous encoder stays the run's final one, and no further round
runs (it would cluster the same embeddings again).

Each stage's folder also holds ``stage_output.log``, everything the stage printed; the console
shows one line per stage as it starts and ends (:mod:`speechbrain_dino.console`), or streams the
stages' output too with ``verbose``.
"""
from __future__ import annotations

import glob
import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from speechbrain_dino.baselines import BASELINE_DESCRIPTIONS
from speechbrain_dino.console import StageConsole
from speechbrain_dino.errors import DataError
from speechbrain_dino.manifest import read_manifest, write_manifest
from speechbrain_dino.pseudo_labels.outputs import labels_path, read_report
from speechbrain_dino.pseudo_labels.round_gate import GateData, GateDecision, decide, write_gate_data
from speechbrain_dino.stages import STAGE_LOG, StageRunner, StageUsage
from speechbrain_dino.synthetic.corpus import generate_corpus
from speechbrain_dino.verification.evaluation import manifest_speakers, paired_eer_change, score_file
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import write_trials

logger = logging.getLogger(__name__)

#: Columns of the results table: (key in a row dict, header, format).
COLUMNS = (
    ("system", "system", "{}"),
    ("EER", "EER %", "{:.2f}"),
    ("EER_interval", "EER 95% CI", "{}"),
    ("minDCF_0.01", "minDCF(0.01)", "{:.3f}"),
    ("EER_as_norm", "EER % AS-norm", "{:.2f}"),
    ("EER_change", "EER change vs pretrained (95% CI)", "{}"),
    ("nmi", "NMI", "{:.3f}"),
    ("kept_percent", "kept %", "{:.1f}"),
    ("clusters", "clusters", "{}"),
    ("gate", "round gate: pseudo-EER % (kept?)", "{}"),
    ("micro_f1", "emotion micro-F1 %", "{:.2f}"),
)
#: The pretrained system's name in the table and what it is, unless the YAML says
#: (``pretraining_name``, ``pretraining_description``).
DINO_NAME = "DINO"
DINO_DESCRIPTION = "self-supervised DINO pretraining (no labels)"
#: What the rounds are, after the pretrained system's name.
ROUND_DESCRIPTION = "{} followed by k rounds of pseudo-labels + AAM fine-tuning"


def prepare_synthetic_data(
    output_folder: str, options: Mapping[str, Any], heldout_speakers: int, seed: int, trials_cross: Sequence[str]
) -> None:
    """Generates the synthetic corpus into ``output_folder/data``, split by speaker.

    Writes ``train.csv`` (pretraining and pseudo-labelling), ``test.csv`` (the last
    ``heldout_speakers`` speakers, for verification and emotion) and ``trials.txt`` (every pair of
    held-out utterances, targets differing in each ``trials_cross`` column). ``train.csv`` keeps its
    speaker labels only so that pseudo-labelling can report NMI / purity: DINO's data pipeline
    reads ``wav`` and ``duration`` alone, and the AAM rounds train on the cluster ids.
    """
    data = os.path.join(output_folder, "data")
    rows = generate_corpus(os.path.join(data, "corpus"), **options)
    speakers = sorted({row["spk_id"] for row in rows})
    held_out = set(speakers[-heldout_speakers:])
    write_manifest([row for row in rows if row["spk_id"] not in held_out], os.path.join(data, "train.csv"))
    test = [row for row in rows if row["spk_id"] in held_out]
    write_manifest(test, os.path.join(data, "test.csv"))
    write_trials(generate_trials(test, seed=seed, cross=trials_cross), os.path.join(data, "trials.txt"))


class Pipeline:
    """Runs the stages described by a pipeline YAML (see ``hparams/pipeline.yaml``).

    Arguments
    ---------
    hparams : dict
        The loaded pipeline YAML: ``output_folder``, ``rounds``, per-stage ``*_hparams`` files and
        ``*_overrides``, and the data: ``train_csv``, ``test_csv``, ``trials``, ``emotion_csv``,
        ``cohort_csv``; optionally ``warm_start_hparams`` and ``warm_start_overrides`` (a
        pretraining run first, whose export initialises the ``pretraining_hparams`` run: ``init_from``),
        ``pretraining_name`` and ``pretraining_description`` (the pretrained system's name in the
        table and what it is; default DINO), ``round_gate`` (``{heldout_share: 0.2}``; a null share
        or a null ``round_gate``: no gate), ``run_options``, command-line run options for every
        stage (``--device=cuda:0``), ``data_root`` for ``$data_root`` in the manifests, and
        ``verbose`` (stream every stage's output to the terminal, besides its log file).
    """

    def __init__(self, hparams: Dict[str, Any]) -> None:
        self.hparams = hparams
        self.pretraining_name = str(hparams.get("pretraining_name") or DINO_NAME)
        self.pretraining_description = str(hparams.get("pretraining_description") or DINO_DESCRIPTION)
        self.output = os.path.abspath(hparams["output_folder"])
        self.rows: List[Dict[str, Any]] = []
        self.final_encoder: Optional[str] = None
        self.usage: Dict[str, StageUsage] = {}
        data_root = hparams.get("data_root")
        self.stages = StageRunner(
            run_options=hparams.get("run_options") or [],
            shared_overrides={"data_root": data_root} if data_root else None,
            on_usage=self.usage.__setitem__,
            console=StageConsole(self.plan(), verbose=bool(hparams.get("verbose"))),
        )

    def plan(self) -> List[str]:
        """The kind (recipe) of every stage :meth:`run` starts, in order."""
        pretraining = ["train_dino"] * (2 if self.hparams.get("warm_start_hparams") else 1)
        return [*pretraining, *self.evaluation_kinds(), *self.rounds_kinds(int(self.hparams["rounds"]))]

    def evaluation_kinds(self) -> List[str]:
        """The kinds of the stages that evaluate one encoder."""
        return ["eval_verification"] + (["eval_emotion"] if self.hparams.get("emotion_csv") else [])

    def rounds_kinds(self, rounds: int) -> List[str]:
        """The kinds of the stages of ``rounds`` rounds, each gated when the YAML says so."""
        gate = ["eval_verification"] * 2 if self.gate_share() else []
        return ["pseudo_label", "train_aam", *gate, *self.evaluation_kinds()] * rounds

    def gate_share(self) -> Optional[float]:
        """The share of each round's cluster members the round gate holds out; None: no gate."""
        return (self.hparams.get("round_gate") or {}).get("heldout_share")

    def folder(self, *parts: str) -> str:
        """A path inside the output folder."""
        return os.path.join(self.output, *parts)

    def pretrain(self) -> str:
        """The self-supervised stages: the warm start when the YAML has one, then the
        ``pretraining_hparams`` run (started from the warm start's encoder); returns the latter's
        ``pretrained/``."""
        hparams = self.hparams
        overrides = dict(hparams.get("pretraining_overrides") or {})
        if hparams.get("warm_start_hparams"):
            overrides["init_from"] = self.stages.train_dino(
                hparams["warm_start_hparams"], hparams["train_csv"], self.folder("warm_start"),
                hparams.get("warm_start_overrides"), name="warm-start pretraining",
            )
        return self.stages.train_dino(hparams["pretraining_hparams"], hparams["train_csv"], self.folder("pretraining"),
                                      overrides, name=f"{self.pretraining_name} pretraining")

    def evaluate(self, name: str, pretrained: str, folder: str, baselines: Sequence[str]) -> None:
        """Verification and emotion evaluation of ``pretrained`` into ``folder``; adds the rows."""
        hparams = self.hparams
        verification = self.stages.verification(
            hparams["verification_hparams"], pretrained, hparams["test_csv"], hparams["trials"],
            os.path.join(folder, "verification"), name, baselines, cohort_csv=hparams.get("cohort_csv"),
        )
        emotion = {}
        if hparams.get("emotion_csv"):
            emotion = self.stages.emotion(
                hparams["emotion_hparams"], pretrained, hparams["emotion_csv"], os.path.join(folder, "emotion"),
                name, baselines, overrides=hparams.get("emotion_overrides"),
            )
        for system in [*baselines, name]:  # the baselines' rows come first, the first time
            self.rows.append(table_row(system, verification[system], emotion.get(system)))

    def change_from_pretraining(self, name: str, folder: str) -> Optional[str]:
        """The relative EER change of the encoder evaluated as ``name`` into ``folder`` against the
        pretrained one, with its paired 95% interval over resampled test speakers (``+8% [-4, +21]``);
        None when a verification left no score file or the test manifest leaves some row without a
        ``spk_id``."""
        files = (score_file(self.folder("pretraining_eval", "verification"), self.pretraining_name),
                 score_file(os.path.join(folder, "verification"), name))
        if not all(os.path.isfile(path) for path in files):
            return None
        rows = read_manifest(self.hparams["test_csv"])
        speakers = manifest_speakers(rows)
        if speakers is None:
            return None
        change = paired_eer_change(*files, {row["ID"]: speaker for row, speaker in zip(rows, speakers)})
        return f"{change.value:+.0f}% [{change.low:+.0f}, {change.high:+.0f}]"

    def add_clustering(self, labels_folder: str) -> None:
        """Puts a round's clustering quality on the row of the model that follows it."""
        report = read_report(labels_folder)
        row = self.rows[-1]
        row["clusters"] = report["clusters_after_filtering"]
        row["kept_percent"] = 100.0 * report["kept_fraction"]
        metrics = report.get("metrics") or {}
        if metrics.get("kept"):
            row["nmi"] = metrics["kept"]["nmi"]

    def gate_split(self, round_name: str, labels_csv: str, folder: str, heldout_share: float,
                   seed: int) -> Optional[GateData]:
        """The round's held-out members and trials; None (the round is not gated, said on the
        console) when its clusters are too small to spare members."""
        try:
            return write_gate_data(read_manifest(labels_csv), folder, heldout_share, seed)
        except DataError as error:
            message = f"round gate skipped for {round_name}: {error.message}"
            logger.warning(message)
            self.stages.console.print(f"  {message}")
            return None

    def write_table(self) -> str:
        """Writes ``results.json`` and ``results.md``; returns the Markdown table and its legend."""
        text = results_table(self.rows) + "\n\n" + legend(self.rows, self.pretraining_name,
                                                           self.pretraining_description)
        with open(self.folder("results.json"), "w", encoding="utf-8") as fout:
            json.dump(self.rows, fout, indent=2)
        with open(self.folder("results.md"), "w", encoding="utf-8") as fout:
            fout.write(text + "\n")
        return text

    def locations(self) -> List[str]:
        """Lines telling where the table, the stages' logs and the figures are."""
        figures = sorted(glob.glob(self.folder("**", "*.png"), recursive=True))
        det = [os.path.relpath(path, self.output) for path in figures if os.path.basename(path) == "det.png"]
        lines = [
            f"Outputs in {self.output}:",
            "  results.md, results.json  this table",
            f"  final encoder: {os.path.relpath(self.final_encoder, self.output) if self.final_encoder else '-'}"
            " (loads with EncoderClassifier.from_hparams)",
            f"  */{STAGE_LOG}  each stage's full output (e.g. pretraining/{STAGE_LOG})",
        ]
        if det:
            lines.append(f"  {', '.join(det)}  DET curves")
        if len(figures) > len(det):
            lines.append(f"  */emotion/confusion_*.png  emotion confusion matrices ({len(figures) - len(det)})")
        return lines

    def run(self) -> str:
        """All stages in order; returns the results table (Markdown)."""
        hparams = self.hparams
        pretrained = self.pretrain()
        self.evaluate(self.pretraining_name, pretrained, self.folder("pretraining_eval"),
                      list(hparams.get("baselines") or []))
        per_round = hparams.get("pseudo_label_round_overrides") or []
        gate_share = self.gate_share()
        for round_index in range(1, int(hparams["rounds"]) + 1):
            round_name = f"round {round_index}"
            labels = self.stages.pseudo_label(
                hparams["pseudo_label_hparams"], pretrained, hparams["train_csv"],
                self.folder(f"round{round_index}", "labels"),
                {
                    **(hparams.get("pseudo_label_overrides") or {}),
                    **(per_round[round_index - 1] if round_index <= len(per_round) else {}),
                },
                name=f"{round_name}: pseudo-labels",
            )
            train_csv = labels_path(labels)
            split = None
            if gate_share:
                split = self.gate_split(round_name, train_csv, self.folder(f"round{round_index}", "gate"),
                                        gate_share, int(hparams["seed"]) + round_index)
                if split:
                    train_csv = split.train_csv
                else:  # this round runs without its two gate stages
                    self.stages.console.replan(["train_aam", *self.evaluation_kinds(),
                                                *self.rounds_kinds(int(hparams["rounds"]) - round_index)])
            candidate = self.stages.train_aam(
                hparams["aam_hparams"], train_csv, pretrained, self.folder(f"round{round_index}", "aam"),
                hparams.get("aam_overrides"), name=f"{round_name}: AAM fine-tuning",
            )
            decision = None
            if split:
                decision = gate_round(self.stages, hparams["verification_hparams"], round_name, pretrained,
                                      candidate, split)
                if not decision.accepted:  # no further round: this round's evaluation ends the run
                    self.stages.console.replan(self.evaluation_kinds())
            round_eval = self.folder(f"round{round_index}", "eval")
            self.evaluate(round_name, candidate, round_eval, [])
            self.rows[-1]["EER_change"] = self.change_from_pretraining(round_name, round_eval)
            self.add_clustering(labels)
            if decision is not None:
                self.rows[-1]["gate"] = decision.cell()
                if not decision.accepted:
                    break
            pretrained = candidate
        self.final_encoder = pretrained
        with open(self.folder("final_encoder.txt"), "w", encoding="utf-8") as fout:
            fout.write(pretrained + "\n")
        return self.write_table()


def gate_round(
    stages: StageRunner, verification_hparams: str, round_name: str, previous: str, candidate: str, split: GateData
) -> GateDecision:
    """Both encoders' EER on the held-out members' trials of ``split`` (each verified into its own
    folder beside them) and the decision, saved as ``decision.json`` there and printed."""
    folder = os.path.dirname(split.trials)
    eers = []
    for system, pretrained in (("previous", previous), (round_name, candidate)):
        results = stages.verification(
            verification_hparams, pretrained, split.heldout_csv, split.trials,
            os.path.join(folder, system.replace(" ", "")), system, name=f"{round_name}: gate ({system} encoder)",
        )
        eers.append(results[system]["raw"]["EER"])
    decision = decide(*eers)
    decision.write(os.path.join(folder, "decision.json"))
    logger.info(decision.summary())
    stages.console.print(f"  {decision.summary()}")
    return decision


def table_row(
    system: str, verification: Mapping[str, Any], emotion: Optional[Mapping[str, Any]]
) -> Dict[str, Any]:
    """A table row from a system's verification metrics (``raw``[, ``as_norm``]) and emotion results."""
    row = {"system": system, "EER": verification["raw"]["EER"], "minDCF_0.01": verification["raw"]["minDCF_0.01"]}
    interval = verification["raw"].get("EER_interval_95")
    if interval:  # over resampled test speakers (verification/bootstrap.py)
        row["EER_interval"] = f"{interval[0]:.1f}-{interval[1]:.1f}"
    if "as_norm" in verification:
        row["EER_as_norm"] = verification["as_norm"]["EER"]
    if emotion:
        row["micro_f1"] = emotion["micro_f1"]
    return row


def results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table with the :data:`COLUMNS` that at least one row fills."""
    columns = [column for column in COLUMNS if any(row.get(column[0]) is not None for row in rows)]
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "" for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def legend(rows: Sequence[Mapping[str, Any]], pretraining_name: str = DINO_NAME,
           pretraining_description: str = DINO_DESCRIPTION) -> str:
    """One line saying what each system of the table is (baselines, the pretrained system, rounds)."""
    names = [row["system"] for row in rows]
    parts = [f"{name} = {BASELINE_DESCRIPTIONS[name]}" for name in names if name in BASELINE_DESCRIPTIONS]
    if pretraining_name in names:
        parts.append(f"{pretraining_name} = {pretraining_description}")
    if any(name.startswith("round ") for name in names):
        parts.append(f"round k = {ROUND_DESCRIPTION.format(pretraining_name)}")
    return "Systems: " + "; ".join(parts) + "."
