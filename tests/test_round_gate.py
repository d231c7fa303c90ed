"""The round gate (held-out cluster members decide whether a round's encoder is kept) and the AAM
budget that scales with the clusters: their arithmetic, and the pipeline's behaviour when a round
is rejected, with the stages replaced by stand-ins that report chosen EERs."""
import io
import json
import os
from collections import Counter

import pytest

from speechbrain_dino.data.manifest import read_manifest, write_manifest
from speechbrain_dino.errors import DataError
from speechbrain_dino.pipeline.console import StageConsole
from speechbrain_dino.pipeline.run import Pipeline
from speechbrain_dino.pseudo_labels.round_gate import decide, hold_out_members, write_gate_data
from speechbrain_dino.training.fine_tuning import budgeted_epochs
from speechbrain_dino.verification.trials import read_trials


def clustered_rows(sizes):
    """Rows whose spk_id is a cluster id, ``sizes[c]`` members in cluster c, interleaved."""
    rows = []
    for member in range(max(sizes)):
        for cluster, size in enumerate(sizes):
            if member < size:
                rows.append({"ID": f"c{cluster}_m{member}", "wav": f"/a/c{cluster}_m{member}.wav",
                             "duration": "2.0", "spk_id": f"pl{cluster:05d}"})
    return rows


def test_held_out_members_come_from_the_largest_clusters_and_leave_two_for_training():
    rows = clustered_rows([20, 12, 10, 6, 3, 3])
    train, heldout = hold_out_members(rows, heldout_share=0.2, seed=1)
    assert {row["ID"] for row in train} | {row["ID"] for row in heldout} == {row["ID"] for row in rows}
    assert not {row["ID"] for row in train} & {row["ID"] for row in heldout}
    given = Counter(row["spk_id"] for row in heldout)
    # 54 rows, 20% wanted (10.8): the 20-member cluster gives 4, the 12 gives 2, the 10 gives 2, the 6 gives 2.
    assert given == {"pl00000": 4, "pl00001": 2, "pl00002": 2, "pl00003": 2}
    kept = Counter(row["spk_id"] for row in train)
    assert min(kept.values()) >= 2 and kept["pl00004"] == 3  # small clusters stay whole
    order = [row["ID"] for row in rows]
    assert [row["ID"] for row in train] == [i for i in order if i in {r["ID"] for r in train}]
    assert hold_out_members(rows, 0.2, seed=1) == (train, heldout)
    assert hold_out_members(rows, 0.2, seed=2) != (train, heldout)


def test_clusters_too_small_for_the_gate_are_one_clear_error():
    with pytest.raises(DataError, match="only 1 of 3 clusters"):
        hold_out_members(clustered_rows([4, 3, 3]), heldout_share=0.2, seed=0)


def test_gate_trials_pair_every_held_out_member_and_are_written_once(tmp_path):
    rows = clustered_rows([10, 10, 8])
    data = write_gate_data(rows, tmp_path / "gate", heldout_share=0.25, seed=0)
    heldout = read_manifest(data.heldout_csv)
    trials = read_trials(data.trials, [row["ID"] for row in heldout])
    assert len(trials) == len(heldout) * (len(heldout) - 1) // 2
    speakers = [row["spk_id"] for row in heldout]
    same = [speakers[e] == speakers[t] for e, t in zip(trials.enrol, trials.test)]
    assert same == [bool(label) for label in trials.labels]
    before = os.path.getmtime(data.train_csv)
    again = write_gate_data(clustered_rows([30, 30]), tmp_path / "gate", heldout_share=0.5, seed=3)
    assert again == data and os.path.getmtime(data.train_csv) == before  # a resumed round keeps its split


def test_a_round_is_kept_only_when_strictly_better():
    assert decide(previous_eer=10.0, round_eer=9.5).accepted
    assert not decide(previous_eer=10.0, round_eer=10.0).accepted
    assert not decide(previous_eer=10.0, round_eer=12.0).accepted


@pytest.mark.parametrize(
    "rows, classes, expected",
    [(300, 50, 22), (1400, 85, 8), (1_000_000, 7000, 2), (200, 100, 40), (100, 1, 2)],
)
def test_the_aam_budget_grows_with_the_clusters_and_shrinks_with_their_members(rows, classes, expected):
    assert budgeted_epochs(rows, classes, examples_per_class=130, min_epochs=2, max_epochs=40) == expected


class StandInStages:
    """The stage API with no recipe run: each encoder is a folder name, each verification the
    EER given for (encoder, trial list)."""

    def __init__(self, root, eers, plan):
        self.root, self.eers, self.calls = root, eers, []
        self.console = StageConsole(plan, out=io.StringIO())

    def start(self, name):
        self.console.stage_started(name)

    def train_dino(self, hparams, train_csv, folder, overrides=None, name=None):
        self.start(name)
        self.calls.append("dino")
        return "dino"

    def pseudo_label(self, hparams, pretrained, train_csv, folder, overrides, name):
        self.start(name)
        self.calls.append(f"labels from {pretrained}")
        os.makedirs(folder, exist_ok=True)
        write_manifest(clustered_rows([10, 10, 10, 10]), os.path.join(folder, "pseudo_labels.csv"))
        with open(os.path.join(folder, "report.json"), "w") as fout:
            json.dump({"clusters_after_filtering": 4, "kept_fraction": 0.9}, fout)
        return folder

    def train_aam(self, hparams, train_csv, init_from, folder, overrides, name):
        self.start(name)
        rows = read_manifest(train_csv)
        self.calls.append(f"aam on {len(rows)} rows from {init_from}")
        return f"aam{len([c for c in self.calls if c.startswith('aam')])}"

    def verification(self, hparams, pretrained, test_csv, trials, folder, system, baselines=(), **kwargs):
        self.start(kwargs.get("name") or f"{system}: verification")
        kind = "gate" if "gate" in os.fspath(folder) else "test"
        return {system: {"raw": {"EER": self.eers[pretrained][kind], "minDCF_0.01": 0.5}}}


@pytest.mark.parametrize("round2_gate_eer, final", [(5.0, "aam2"), (9.0, "aam1")])
def test_a_rejected_round_leaves_the_previous_encoder_and_stops_the_rounds(tmp_path, round2_gate_eer, final):
    hparams = {"output_folder": str(tmp_path), "rounds": 3, "seed": 0, "train_csv": "train.csv",
               "test_csv": "test.csv", "trials": "trials.txt", "round_gate": {"heldout_share": 0.2},
               "pretraining_hparams": "d", "pseudo_label_hparams": "p", "aam_hparams": "a", "verification_hparams": "v"}
    eers = {"dino": {"gate": 20.0, "test": 30.0}, "aam1": {"gate": 8.0, "test": 25.0},
            "aam2": {"gate": round2_gate_eer, "test": 27.0}, "aam3": {"gate": 9.0, "test": 26.0}}
    pipeline = Pipeline(hparams)
    pipeline.stages = stages = StandInStages(tmp_path, eers, pipeline.plan())
    pipeline.run()
    assert stages.calls[:3] == ["dino", "labels from dino", "aam on 32 rows from dino"]  # 8 of 40 held out
    assert stages.calls[3:5] == ["labels from aam1", "aam on 32 rows from aam1"]
    rows = {row["system"]: row for row in pipeline.rows}
    assert rows["round 1"]["gate"] == "8.00 vs 20.00 (kept)"
    if final == "aam1":  # round 2 rejected: evaluated and shown, but no round 3, and round 1 is final
        assert rows["round 2"]["gate"] == "9.00 vs 8.00 (rejected)" and "round 3" not in rows
        assert len(stages.calls) == 5
    else:
        assert stages.calls[5] == "labels from aam2" and "round 3" in rows
        final = "aam2" if rows["round 3"]["gate"].endswith("(rejected)") else "aam3"
    assert (tmp_path / "final_encoder.txt").read_text().strip() == final
    # the console's stage count follows the rounds that ran: its last line is [N/N]
    started = stages.console.index
    assert len(stages.console.plan) == started == (12 if final == "aam1" else 17)
    assert stages.console.out.getvalue().splitlines()[-1].startswith(f"[{started}/{started}] ")
    assert json.loads((tmp_path / "round2" / "gate" / "decision.json").read_text())["accepted"] == (round2_gate_eer < 8.0)
