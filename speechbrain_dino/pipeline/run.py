"""The whole method as one resumable run: [warm start ->] pretraining -> R x (pseudo-label -> AAM) -> evaluations.

Each stage runs through the stage API (:mod:`speechbrain_dino.pipeline.stages`): its recipe in its own
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
shows one line per stage as it starts and ends (:mod:`speechbrain_dino.pipeline.console`), or streams the
stages' output too with ``verbose``.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import json
import logging
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from speechbrain_dino.data.manifest import read_manifest, write_manifest
from speechbrain_dino.inference.baselines import BASELINE_DESCRIPTIONS
from speechbrain_dino.pipeline.console import StageConsole
from speechbrain_dino.pipeline.rounds import GATE_SIDES, Round, RoundRunner, RoundSettings
from speechbrain_dino.pipeline.stages import STAGE_LOG, StageRunner, StageUsage
from speechbrain_dino.pseudo_labels.outputs import read_report
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


@dataclasses.dataclass
class Step:
    """One step of a run: the stage of ``kind`` it starts (a recipe name; "" for bookkeeping that
    starts none), what it does, and the round it belongs to (0: none) with its ``part``."""

    kind: str
    action: Callable[[], Optional[Callable[["Step"], bool]]]
    round_index: int = 0
    part: str = ""


class Pipeline:
    """Runs the stages described by a pipeline YAML (see ``hparams/pipeline.yaml``).

    The run is one list of :class:`Step` (:meth:`steps`); the console's count of stages is that
    list's, and a step that learns the run will skip some (a round gate that cannot hold members
    out, a rejected round ending the rounds) drops them from it.

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
        self.encoder: Optional[str] = None  # the encoder the next round starts from
        self.final_encoder: Optional[str] = None
        self.usage: Dict[str, StageUsage] = {}
        self.evaluations: Dict[str, Dict[str, Any]] = {}  # system -> {"verification": ..., "emotion": ...}
        data_root = hparams.get("data_root")
        self.stages = StageRunner(
            run_options=hparams.get("run_options") or [],
            shared_overrides={"data_root": data_root} if data_root else None,
            on_usage=self.usage.__setitem__,
            console=StageConsole(verbose=bool(hparams.get("verbose"))),
        )
        self.round_settings = RoundSettings.from_pipeline(hparams)
        self.steps = self.plan_steps()
        self.stages.console.replan(self.plan())

    def plan(self) -> List[str]:
        """The kind (recipe) of every stage :meth:`run` starts, in order."""
        return [step.kind for step in self.steps if step.kind]

    @property
    def rounds(self) -> RoundRunner:
        """The rounds' parts, run through :attr:`stages`."""
        return RoundRunner(self.stages, self.round_settings, self.hparams["train_csv"], self.output)

    def gate_share(self) -> Optional[float]:
        """The share of each round's cluster members the round gate holds out; None: no gate."""
        return self.round_settings.gate_share

    def folder(self, *parts: str) -> str:
        """A path inside the output folder."""
        return os.path.join(self.output, *parts)

    # ------------------------------------------------------------------ steps
    def plan_steps(self) -> List[Step]:
        """Every step of the run, in order: [warm start,] pretraining and its evaluation, then per
        round: pseudo-labels, [the gate's hold-out,] fine-tuning, [the gate,] evaluation, its row."""
        hparams = self.hparams
        steps = [Step("train_dino", self.warm_start)] if hparams.get("warm_start_hparams") else []
        steps.append(Step("train_dino", self.pretrain))
        steps += self.evaluation_steps(self.pretraining_name, lambda: self.encoder, self.folder("pretraining_eval"),
                                       list(hparams.get("baselines") or []))
        gated = bool(self.gate_share())
        for index in range(1, int(hparams["rounds"]) + 1):
            round_ = Round(index, start="")
            steps.append(Step("pseudo_label", functools.partial(self.start_round, round_), index))
            if gated:
                steps.append(Step("", functools.partial(self.hold_out, round_), index))
            steps.append(Step("train_aam", lambda round_=round_: self.rounds.fine_tune(round_), index))
            if gated:
                steps += [Step("eval_verification", lambda round_=round_, side=side: self.rounds.gate_verification(
                    round_, side), index, "gate") for side in GATE_SIDES]
                steps.append(Step("", functools.partial(self.decide, round_), index, "gate"))
            steps += self.evaluation_steps(round_.name, lambda round_=round_: round_.encoder,
                                           self.folder(f"round{index}", "eval"), [], index)
            steps.append(Step("", functools.partial(self.end_round, round_), index))
        return steps

    def evaluation_steps(self, name: str, encoder: Callable[[], str], folder: str, baselines: Sequence[str],
                         round_index: int = 0) -> List[Step]:
        """Verification [and emotion] of the encoder ``encoder()`` as ``name`` into ``folder``, then
        its table rows (the baselines' first)."""
        steps = [Step("eval_verification", lambda: self.verify(name, encoder(), folder, baselines), round_index)]
        if self.hparams.get("emotion_csv"):
            steps.append(Step("eval_emotion", lambda: self.recognise_emotion(name, encoder(), folder, baselines),
                              round_index))
        steps.append(Step("", lambda: self.add_rows(name, baselines), round_index))
        return steps

    def warm_start(self) -> None:
        """The first pretraining (e.g. the contrastive baseline), whose encoder starts the next."""
        self.encoder = self.stages.train_dino(
            self.hparams["warm_start_hparams"], self.hparams["train_csv"], self.folder("warm_start"),
            self.hparams.get("warm_start_overrides"), name="warm-start pretraining",
        )

    def pretrain(self) -> None:
        """The ``pretraining_hparams`` run (started from the warm start's encoder when there is one)."""
        overrides = dict(self.hparams.get("pretraining_overrides") or {})
        if self.encoder is not None:
            overrides["init_from"] = self.encoder
        self.encoder = self.stages.train_dino(self.hparams["pretraining_hparams"], self.hparams["train_csv"],
                                              self.folder("pretraining"), overrides,
                                              name=f"{self.pretraining_name} pretraining")

    def verify(self, name: str, pretrained: str, folder: str, baselines: Sequence[str]) -> None:
        """Speaker verification of ``pretrained`` (and the baselines) into ``folder/verification``."""
        hparams = self.hparams
        self.evaluations.setdefault(name, {})["verification"] = self.stages.verification(
            hparams["verification_hparams"], pretrained, hparams["test_csv"], hparams["trials"],
            os.path.join(folder, "verification"), name, baselines, cohort_csv=hparams.get("cohort_csv"),
        )

    def recognise_emotion(self, name: str, pretrained: str, folder: str, baselines: Sequence[str]) -> None:
        """Emotion recognition from the embeddings of ``pretrained`` (and the baselines)."""
        hparams = self.hparams
        self.evaluations.setdefault(name, {})["emotion"] = self.stages.emotion(
            hparams["emotion_hparams"], pretrained, hparams["emotion_csv"], os.path.join(folder, "emotion"),
            name, baselines, overrides=hparams.get("emotion_overrides"),
        )

    def add_rows(self, name: str, baselines: Sequence[str]) -> None:
        """The table rows of the baselines (the first time) and of ``name``."""
        results = self.evaluations[name]
        emotion = results.get("emotion", {})
        for system in [*baselines, name]:
            self.rows.append(table_row(system, results["verification"][system], emotion.get(system)))

    def start_round(self, round_: Round) -> None:
        """A round starts from the current encoder: its pseudo-labels."""
        round_.start = self.encoder
        self.rounds.cluster(round_)

    def hold_out(self, round_: Round) -> Optional[Callable[[Step], bool]]:
        """The gate's held-out members; when the clusters are too small, drops the round's gate."""
        if self.rounds.hold_out(round_):
            return None
        return lambda step: step.round_index == round_.index and step.part == "gate"

    def decide(self, round_: Round) -> Optional[Callable[[Step], bool]]:
        """The gate's verdict; a rejected round is still evaluated but ends the rounds."""
        self.rounds.decide(round_)
        if round_.accepted:
            return None
        return lambda step: step.round_index > round_.index

    def end_round(self, round_: Round) -> None:
        """The round's row gets its EER change against the pretrained encoder, its clustering and
        the gate's verdict; an accepted round's encoder starts the next round."""
        row = self.rows[-1]
        row["EER_change"] = self.change_from_pretraining(round_.name, self.folder(f"round{round_.index}", "eval"))
        report = read_report(round_.labels)
        row["clusters"] = report["clusters_after_filtering"]
        row["kept_percent"] = 100.0 * report["kept_fraction"]
        metrics = report.get("metrics") or {}
        if metrics.get("kept"):
            row["nmi"] = metrics["kept"]["nmi"]
        if round_.decision is not None:
            row["gate"] = round_.decision.cell()
        if round_.accepted:
            self.encoder = round_.encoder

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

    # -------------------------------------------------------------------- run
    def run(self) -> str:
        """Every step in order; returns the results table (Markdown)."""
        queue = list(self.steps)
        while queue:
            drop = queue.pop(0).action()
            if drop is not None:
                queue = [step for step in queue if not drop(step)]
                self.stages.console.replan([step.kind for step in queue if step.kind])
        self.final_encoder = self.encoder
        with open(self.folder("final_encoder.txt"), "w", encoding="utf-8") as fout:
            fout.write(self.encoder + "\n")
        return self.write_table()

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
