"""The pipeline's console: one line per stage start and end with its key number and a time
estimate; the results table keeps only filled columns and says what each system is."""
import io

from speechbrain_dino.pipeline.console import StageConsole, format_duration
from speechbrain_dino.pipeline.run import legend, results_table, table_row
from speechbrain_dino.pipeline.summaries import (
    emotion_summary,
    pseudo_label_summary,
    training_summary,
    verification_summary,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_start_and_end_lines_with_key_numbers_elapsed_time_and_an_estimate_of_what_remains():
    clock, out = FakeClock(), io.StringIO()
    console = StageConsole(["train_dino", "eval_verification", "pseudo_label", "train_aam"], out=out, clock=clock)
    console.stage_started("DINO pretraining")
    clock.now = 100.0
    console.stage_finished("DINO pretraining", "train_dino", 100.0, "loss 4.120")
    console.stage_skipped("DINO: verification", "EER DINO 33.70%")
    console.stage_started("round 1: pseudo-labels")
    clock.now = 130.0
    console.stage_finished("round 1: pseudo-labels", "pseudo_label", 30.0, "NMI 0.800, kept 75.0%, 9 clusters")
    console.stage_started("round 1: AAM fine-tuning")
    clock.now = 190.0
    console.stage_finished("round 1: AAM fine-tuning", "train_aam", 60.0, "loss 2.000")
    assert out.getvalue().splitlines() == [
        "[1/4] DINO pretraining ...",
        # only DINO measured (10 s per prior unit): verification 1 + pseudo-labels 1 + AAM 5 units left
        "[1/4] DINO pretraining: 1m40s | loss 4.120 | elapsed 1m40s, about 1m10s left",
        "[2/4] DINO: verification: done before | EER DINO 33.70%",
        "[3/4] round 1: pseudo-labels ...",
        # measured so far: 130 s for 11 prior units; AAM's prior 5 of them
        "[3/4] round 1: pseudo-labels: 30s | NMI 0.800, kept 75.0%, 9 clusters | elapsed 2m10s, about 59s left",
        "[4/4] round 1: AAM fine-tuning ...",
        "[4/4] round 1: AAM fine-tuning: 1m00s | loss 2.000 | elapsed 3m10s",
    ]


def test_an_unplanned_run_numbers_its_stages_without_an_estimate():
    out = io.StringIO()
    console = StageConsole(out=out, clock=FakeClock())
    console.stage_started("DINO pretraining")
    console.stage_finished("DINO pretraining", "train_dino", 5.0, "loss 1.000")
    assert out.getvalue().splitlines() == ["[1/?] DINO pretraining ...", "[1/?] DINO pretraining: 5s | loss 1.000 | elapsed 0s"]
    assert format_duration(3725) == "1h02m"


def test_summaries_of_each_kind_of_stage(tmp_path):
    (tmp_path / "train_log.txt").write_text(
        "epoch: 1, lr: 1e-3 - train loss: 5.28, train teacher_entropy: 1.2\n"
        "epoch: 2, lr: 1e-4 - train loss: 4.4404, train teacher_entropy: 1.3 - valid EER: 31.25, valid minDCF_0.01: 0.9\n"
    )
    assert training_summary(tmp_path) == "loss 4.440, valid EER 31.25%"
    assert training_summary(tmp_path / "missing") == "no train_log.txt"
    report = {"kept_fraction": 0.9166, "clusters_after_filtering": 5, "metrics": {"kept": {"nmi": 0.44}}}
    assert pseudo_label_summary(report) == "NMI 0.440, kept 91.7%, 5 clusters"
    assert pseudo_label_summary({"kept_fraction": 0.5, "clusters_after_filtering": 3}) == "kept 50.0%, 3 clusters"
    verification = {"DINO": {"raw": {"EER": 33.7}}, "mfcc_stats": {"raw": {"EER": 23.02}}}
    assert verification_summary(verification) == "EER DINO 33.70%, mfcc_stats 23.02%"
    assert emotion_summary({"DINO": {"micro_f1": 61.234}}) == "micro-F1 DINO 61.23%"


def test_the_table_shows_only_filled_columns_and_a_legend_of_its_systems():
    rows = [
        {"system": "mfcc_stats", "EER": 23.0, "minDCF_0.01": 0.9, "micro_f1": 40.0},
        {"system": "DINO", "EER": 33.7, "minDCF_0.01": 0.95, "micro_f1": 45.0},
        {"system": "round 1", "EER": 29.5, "minDCF_0.01": 0.9, "micro_f1": 44.0, "nmi": 0.8, "kept_percent": 75.0,
         "clusters": 9},
    ]
    table = results_table(rows).splitlines()
    assert table[0] == "| system | EER % | minDCF(0.01) | NMI | kept % | clusters | emotion micro-F1 % |"
    assert table[-1] == "| round 1 | 29.50 | 0.900 | 0.800 | 75.0 | 9 | 44.00 |"
    row = table_row("DINO", {"raw": {"EER": 33.7, "minDCF_0.01": 0.95, "EER_interval_95": [28.04, 39.96]}}, None)
    assert results_table([row]).splitlines()[-1] == "| DINO | 33.70 | 28.0-40.0 | 0.950 |"
    changed = results_table([row, {**row, "EER_change": "+8% [-4, +21]"}]).splitlines()
    assert changed[0].endswith("| EER change vs pretrained (95% CI) |")
    assert changed[-1].endswith("| 0.950 | +8% [-4, +21] |") and changed[-2].endswith("| 0.950 |  |")
    assert "AS-norm" not in results_table(rows)
    text = legend(rows)
    assert text.startswith("Systems: mfcc_stats = MFCC mean+std statistics") and "\n" not in text
    assert "DINO = self-supervised" in text and "round k = DINO followed by k rounds" in text
    renamed = [{**row, "system": "SDPN" if row["system"] == "DINO" else row["system"]} for row in rows]
    text = legend(renamed, "SDPN", "SDPN from a contrastive start")
    assert "SDPN = SDPN from a contrastive start" in text and "round k = SDPN followed by k rounds" in text
    assert "DINO" not in text


def test_replanning_changes_the_count_of_the_stages_still_to_start():
    out = io.StringIO()
    console = StageConsole(["train_dino", "eval_verification", "pseudo_label", "train_aam"], out=out)
    console.stage_started("pretraining")
    console.stage_started("verification")
    console.replan([])  # the rounds will not run
    assert console.plan == ["train_dino", "eval_verification"]
    console.stage_finished("verification", "eval_verification", 5.0, "EER 9%")
    assert out.getvalue().splitlines()[-1].startswith("[2/2] verification: 5s")
    assert "left" not in out.getvalue().splitlines()[-1]
