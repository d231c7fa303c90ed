"""Pseudo-label rounds: the one implementation that the pipeline and every study run.

A round clusters the training pool with the current encoder (``recipes/pseudo_label.py``),
fine-tunes that encoder with AAM-softmax on the confident clusters (``recipes/train_aam.py``) and,
with a gate share, holds some cluster members out of the fine-tuning and keeps the new encoder
only if it verifies them better than the previous one
(:mod:`~speechbrain_dino.pseudo_labels.round_gate`). Its folder ``round<k>/`` holds::

    labels/   pseudo_labels.csv, report.json
    gate/     with a gate: the held-out members, their trials, both encoders' verification on them
              and decision.json
    aam/      the fine-tuning (pretrained/ at the end)

Each part of a round is a method of :class:`RoundRunner`, so that the pipeline can list them as
its stages (:mod:`~speechbrain_dino.pipeline.run`); :meth:`RoundRunner.run_round` runs them in order.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.pipeline.stages import StageRunner
from speechbrain_dino.pseudo_labels.outputs import labels_path
from speechbrain_dino.pseudo_labels.round_gate import GateData, GateDecision, decide, write_gate_data

logger = logging.getLogger(__name__)

#: The encoders the gate compares: the one the round started from, and the round's.
GATE_SIDES = ("previous", "round")


@dataclasses.dataclass(frozen=True)
class RoundSettings:
    """What every round runs: its stages' YAMLs and overrides, and the optional gate.

    Attributes
    ----------
    pseudo_label_hparams, aam_hparams, verification_hparams : str
        The YAMLs of the clustering, the fine-tuning and the gate's verification.
    pseudo_label_overrides, aam_overrides : mapping
        Overrides of every round's clustering and fine-tuning.
    per_round_overrides : sequence of mappings
        Clustering overrides of round 1, 2, ... on top (e.g. a stricter threshold later).
    gate_share : float, optional
        The share of each round's cluster members the gate holds out (None: no gate).
    seed : int
        The gate's draws in round ``k`` use ``seed + k``.
    """

    pseudo_label_hparams: str
    aam_hparams: str
    verification_hparams: str
    pseudo_label_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    aam_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    per_round_overrides: Sequence[Mapping[str, Any]] = ()
    gate_share: Optional[float] = None
    seed: int = 0

    @classmethod
    def from_pipeline(cls, hparams: Mapping[str, Any]) -> "RoundSettings":
        """The settings of a pipeline YAML (``*_hparams``, ``*_overrides``, ``round_gate``, ``seed``)."""
        return cls(
            hparams["pseudo_label_hparams"], hparams["aam_hparams"], hparams["verification_hparams"],
            dict(hparams.get("pseudo_label_overrides") or {}), dict(hparams.get("aam_overrides") or {}),
            list(hparams.get("pseudo_label_round_overrides") or []),
            (hparams.get("round_gate") or {}).get("heldout_share"), int(hparams["seed"]),
        )

    def clustering_overrides(self, index: int) -> Dict[str, Any]:
        """The clustering overrides of round ``index`` (1-based)."""
        per_round = self.per_round_overrides[index - 1] if index <= len(self.per_round_overrides) else {}
        return {**self.pseudo_label_overrides, **per_round}


@dataclasses.dataclass
class Round:
    """What one round made so far.

    Attributes
    ----------
    index : int
        1, 2, ...
    start : str
        The encoder the round started from (``pretrained/``).
    labels : str
        Its labels folder, once clustered.
    split : GateData, optional
        The gate's held-out members and trials (None without a gate, or when the clusters were too
        small to spare members).
    encoder : str
        The fine-tuned encoder's ``pretrained/``, once trained.
    gate_eers : dict
        The gate's EER of each side of :data:`GATE_SIDES` verified so far.
    decision : GateDecision, optional
        The gate's verdict, once both sides are verified.
    """

    index: int
    start: str
    labels: str = ""
    split: Optional[GateData] = None
    encoder: str = ""
    gate_eers: Dict[str, float] = dataclasses.field(default_factory=dict)
    decision: Optional[GateDecision] = None

    @property
    def name(self) -> str:
        """``round k``."""
        return f"round {self.index}"

    @property
    def accepted(self) -> bool:
        """Whether the round's encoder replaces the previous one (always, without a gate)."""
        return self.decision is None or self.decision.accepted


class RoundRunner:
    """Runs the parts of pseudo-label rounds on one training pool, each through the stage API.

    Arguments
    ---------
    stages : StageRunner
        Runs (or skips, when done) each stage.
    settings : RoundSettings
    train_csv : str
        The pool to cluster (its ``spk_id`` is only reported).
    folder : str
        The rounds go to ``<folder>/round<k>/``.
    aam_overrides : mapping, optional
        Overrides of the fine-tuning on top of the settings' (e.g. a study's validation set).
    check_labels : callable, optional
        Called with each round's labelled manifest (e.g. a study asserting that no evaluation
        speaker reached it).
    """

    def __init__(
        self, stages: StageRunner, settings: RoundSettings, train_csv: str, folder: str,
        aam_overrides: Optional[Mapping[str, Any]] = None, check_labels: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.stages = stages
        self.settings = settings
        self.train_csv = train_csv
        self.folder = folder
        self.aam_overrides = {**settings.aam_overrides, **(aam_overrides or {})}
        self.check_labels = check_labels

    def round_folder(self, round_: Round, *parts: str) -> str:
        """A path inside ``round<k>/``."""
        return os.path.join(self.folder, f"round{round_.index}", *parts)

    def cluster(self, round_: Round) -> None:
        """Pseudo-labels of the pool from ``round_.start``."""
        round_.labels = self.stages.pseudo_label(
            self.settings.pseudo_label_hparams, round_.start, self.train_csv, self.round_folder(round_, "labels"),
            self.settings.clustering_overrides(round_.index), name=f"{round_.name}: pseudo-labels",
        )
        if self.check_labels is not None:
            self.check_labels(labels_path(round_.labels))

    def hold_out(self, round_: Round) -> bool:
        """With a gate: the members held out of the fine-tuning and their trials. Returns whether
        the round is gated (False, said on the console, when its clusters are too small)."""
        if not self.settings.gate_share:
            return False
        try:
            round_.split = write_gate_data(read_manifest(labels_path(round_.labels)), self.round_folder(round_, "gate"),
                                           self.settings.gate_share, self.settings.seed + round_.index)
        except DataError as error:
            message = f"round gate skipped for {round_.name}: {error.message}"
            logger.warning(message)
            self.stages.console.print(f"  {message}")
        return round_.split is not None

    def fine_tune(self, round_: Round) -> None:
        """AAM fine-tuning of ``round_.start`` on the labels (less the held-out members)."""
        train_csv = round_.split.train_csv if round_.split else labels_path(round_.labels)
        round_.encoder = self.stages.train_aam(
            self.settings.aam_hparams, train_csv, round_.start, self.round_folder(round_, "aam"),
            self.aam_overrides, name=f"{round_.name}: AAM fine-tuning",
        )

    def gate_verification(self, round_: Round, side: str) -> None:
        """One side's EER on the held-out members' trials (``previous`` or ``round``)."""
        system = "previous" if side == "previous" else round_.name
        encoder = round_.start if side == "previous" else round_.encoder
        results = self.stages.verification(
            self.settings.verification_hparams, encoder, round_.split.heldout_csv, round_.split.trials,
            os.path.join(os.path.dirname(round_.split.trials), system.replace(" ", "")), system,
            name=f"{round_.name}: gate ({system} encoder)",
        )
        round_.gate_eers[side] = results[system]["raw"]["EER"]

    def decide(self, round_: Round) -> None:
        """The gate's verdict from both EERs, saved as ``decision.json`` beside them and printed."""
        round_.decision = decide(*(round_.gate_eers[side] for side in GATE_SIDES))
        round_.decision.write(os.path.join(os.path.dirname(round_.split.trials), "decision.json"))
        logger.info(round_.decision.summary())
        self.stages.console.print(f"  {round_.decision.summary()}")

    def run_round(self, index: int, start: str) -> Round:
        """Every part of round ``index`` from the encoder ``start``, in order."""
        round_ = Round(index, start)
        self.cluster(round_)
        gated = self.hold_out(round_)
        self.fine_tune(round_)
        if gated:
            for side in GATE_SIDES:
                self.gate_verification(round_, side)
            self.decide(round_)
        return round_

    def run(self, rounds: int, start: str, after_round: Optional[Callable[[Round], None]] = None) -> List[Round]:
        """Up to ``rounds`` rounds from ``start``, each from the previous one's encoder;
        ``after_round`` (e.g. an evaluation) sees every round, and a round the gate rejects is the
        last (the next one would cluster the same embeddings again)."""
        done: List[Round] = []
        for index in range(1, rounds + 1):
            round_ = self.run_round(index, start)
            if after_round is not None:
                after_round(round_)
            done.append(round_)
            if not round_.accepted:
                break
            start = round_.encoder
        return done


def final_encoder(start: str, rounds: Sequence[Round]) -> str:
    """The encoder a run of ``rounds`` from ``start`` ends with: the last accepted round's."""
    accepted = [round_ for round_ in rounds if round_.accepted]
    return accepted[-1].encoder if accepted else start
