"""Whether a pseudo-label round's encoder replaces the one it started from, decided without labels.

A round fine-tunes the encoder on clusters of the encoder's own embeddings; on real speech a
round can make the embedding worse (wrong merges, too few members per cluster), and nothing in the
training loss shows it. The gate measures both encoders on members of the round's clusters that
the fine-tuning never saw:

1. :func:`hold_out_members` holds out about ``heldout_share`` of the rows, two or more members of
   each of the largest clusters; the fine-tuning trains on the rest.
2. Every pair of held-out members is a trial, a target when both are in the same cluster
   (:func:`write_gate_data`).
3. Both encoders are scored on those trials; the round's encoder replaces the previous one only if
   its EER there is lower (:func:`decide`).

The clusters were formed from the previous encoder's embeddings, and its nearest-centroid
assignment put the held-out members where they are, so these trials favour the previous encoder:
a round passes only when it generalises to unseen members of its clusters better than the
encoder that defined them. The gate is therefore conservative: it can keep an encoder that true
labels would have replaced (it did so on the demo corpus, see ``BENCHMARKS.md``), which is why the
pipelines leave it off by default.
"""
from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Set, Tuple

from speechbrain_dino.data.manifest import Row, write_manifest
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import write_trials

#: Members a cluster keeps for training, and the fewest it gives to the held-out trials.
MIN_TRAIN_MEMBERS = 2
MIN_HELDOUT_MEMBERS = 2


def hold_out_members(rows: Sequence[Row], heldout_share: float, seed: int) -> Tuple[List[Row], List[Row]]:
    """Splits pseudo-labelled ``rows`` (cluster id in ``spk_id``) into training and held-out rows.

    Clusters give members largest first, until about ``heldout_share`` of the rows are held out:
    a cluster of ``n`` gives ``max(2, round(heldout_share * n))`` of them, drawn at random, if it
    keeps at least 2 for training; smaller clusters stay whole in training. Both lists keep the
    order of ``rows``; the same rows and seed give the same split.

    Raises
    ------
    DataError
        Fewer than two clusters can give members (no target or no non-target trial).
    """
    members: Dict[str, List[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        members[row["spk_id"]].append(index)
    rng = random.Random(seed)
    wanted = heldout_share * len(rows)
    heldout: Set[int] = set()
    for cluster in sorted(members, key=lambda name: (-len(members[name]), name)):
        indices = members[cluster]
        count = max(MIN_HELDOUT_MEMBERS, round(heldout_share * len(indices)))
        if len(heldout) >= wanted or len(indices) - count < MIN_TRAIN_MEMBERS:
            break
        heldout.update(rng.sample(indices, count))
    giving = {rows[index]["spk_id"] for index in heldout}
    if len(giving) < 2:
        sizes = sorted((len(indices) for indices in members.values()), reverse=True)[:5]
        raise DataError(
            f"only {len(giving)} of {len(members)} clusters have the {MIN_HELDOUT_MEMBERS + MIN_TRAIN_MEMBERS} "
            f"members the round gate needs (largest: {sizes}); lower the gate's heldout_share, or turn "
            "the gate off (round_gate: null)"
        )
    train = [row for index, row in enumerate(rows) if index not in heldout]
    return train, [row for index, row in enumerate(rows) if index in heldout]


@dataclass(frozen=True)
class GateData:
    """Where a round's split is written: the fine-tuning's rows, the held-out rows and their trials."""

    train_csv: str
    heldout_csv: str
    trials: str

    @classmethod
    def in_folder(cls, folder: PathLike) -> "GateData":
        """The split's files in ``folder``."""
        return cls(*(os.path.join(folder, name) for name in ("train.csv", "heldout.csv", "heldout_trials.txt")))

    def exists(self) -> bool:
        """All three files are there (a resumed pipeline reuses them)."""
        return all(os.path.isfile(path) for path in (self.train_csv, self.heldout_csv, self.trials))


def write_gate_data(rows: Sequence[Row], folder: PathLike, heldout_share: float, seed: int) -> GateData:
    """Writes the split of :func:`hold_out_members` and every held-out pair as a trial into
    ``folder`` (kept when already written, so that a resumed round trains on the same rows)."""
    data = GateData.in_folder(folder)
    if data.exists():
        return data
    train, heldout = hold_out_members(rows, heldout_share, seed)
    os.makedirs(folder, exist_ok=True)
    write_trials(generate_trials(heldout, seed=seed), data.trials)
    write_manifest(heldout, data.heldout_csv)
    write_manifest(train, data.train_csv)  # last: its presence marks a complete split
    return data


@dataclass(frozen=True)
class GateDecision:
    """The held-out pseudo-speaker EER (%) of both encoders, and whether the round's replaces the other."""

    previous_eer: float
    round_eer: float
    accepted: bool

    def summary(self) -> str:
        """One line for the console and the logs."""
        verdict = "kept" if self.accepted else "rejected, the previous encoder stays"
        return (f"round gate | held-out pseudo-speaker EER {self.round_eer:.2f}% against "
                f"{self.previous_eer:.2f}% before: {verdict}")

    def cell(self) -> str:
        """The results-table cell: ``"<round> vs <previous> (kept|rejected)"``."""
        return f"{self.round_eer:.2f} vs {self.previous_eer:.2f} " + ("(kept)" if self.accepted else "(rejected)")

    def write(self, path: PathLike) -> None:
        """Saves the decision as JSON."""
        with open(path, "w", encoding="utf-8") as fout:
            json.dump(asdict(self), fout, indent=2)


def decide(previous_eer: float, round_eer: float) -> GateDecision:
    """The round's encoder replaces the previous one only with a strictly lower held-out EER."""
    return GateDecision(float(previous_eer), float(round_eer), bool(round_eer < previous_eer))
