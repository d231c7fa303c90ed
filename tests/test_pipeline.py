"""The chained pipeline: its console (one line per stage start and end, the table last), the warm
start initialises the pretraining, a run killed during round 1 resumes and ends with the same
table; a failed stage is reported in one line; a preemption signal is passed on to the running
stage and ends the pipeline with status 75."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from dino_setup import tone_corpus

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import load_recipe
from speechbrain_dino.config.recipe_settings import RUN_PIPELINE, RUN_PIPELINE_KEYS, RUN_PIPELINE_RENAMED
from speechbrain_dino.errors import PREEMPTED_EXIT_STATUS, Preempted, StageFailed
from speechbrain_dino.pipeline.run import Pipeline
from speechbrain_dino.pipeline.stages import StageRunner, override_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENCODER = {
    "embedding_dim": 32, "student": {"channels": [32, 32, 32, 32, 96], "attention_channels": 16, "se_channels": 16},
}
CROPS = {"crops": {"global_seconds": 1.0, "local_seconds": 0.5}}
TINY = {
    "synthetic": {"speakers": 12, "utterances": 4, "emotions": 2, "seed": 0, "min_seconds": 1.5, "max_seconds": 2.0},
    "heldout_speakers": 6,
    "baselines": ["mfcc_stats"],
    "rounds": 1,
    "round_gate": {"heldout_share": None},  # tests/test_round_gate.py covers the gate
    "warm_start_overrides": {
        "number_of_epochs": 1, "batch_size": 4, **ENCODER, **CROPS,
        "projection_head": {"hidden_size": 64, "projection_size": 32},
    },
    "pretraining_overrides": {
        "number_of_epochs": 2, "batch_size": 4, "n_prototypes": 64, **ENCODER, **CROPS,
        "student_head": {"hidden_size": 64, "bottleneck_size": 32},
    },
    "pseudo_label_overrides": {"clustering": {"min_size": 2, "ahc_threshold": 0.5}},
    "aam_overrides": {"number_of_epochs": 3, "batch_size": 4, "crop_seconds": 1.0,
                      "schedule": {"frozen_share": 0.34, "warmup_share": 0.167, "margin_warmup_share": 0.34}},
    "emotion_overrides": {"folds": 2},
}


def command(output):
    return [sys.executable, os.path.join(REPO, "recipes", "run_pipeline.py"),
            "hparams/demo/pipeline.yaml", f"--output_folder={output}",
            *override_args(TINY)]


def run(output, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command(output), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


STAGES = ["warm-start pretraining", "SDPN pretraining", "SDPN: verification", "SDPN: emotion",
          "round 1: pseudo-labels", "round 1: AAM fine-tuning", "round 1: verification", "round 1: emotion"]


def check_console(output, folder):
    """Short, every stage named as it starts and ends, stage output in log files, the table last."""
    lines = output.strip().splitlines()
    assert len(lines) <= 45, output
    assert lines[0].startswith("[1/8] "), output  # nothing before the first stage line
    for index, name in enumerate(STAGES, start=1):
        assert f"[{index}/8] {name} ..." in lines
        end = [line for line in lines if line.startswith(f"[{index}/8] {name}: ")]
        assert len(end) == 1 and " | elapsed " in end[0], output
    assert "| loss " in output and "| EER SDPN " in output and "| micro-F1 round 1 " in output
    assert "| NMI " in output
    assert "Going into epoch" not in output  # stage output goes to the logs, not the terminal
    assert "train loss" in (folder / "pretraining" / "stage_output.log").read_text()
    assert "*/stage_output.log" in output and "pretraining_eval/verification/det.png" in output
    assert lines[-7] == ("| system | EER % | EER 95% CI | minDCF(0.01) | EER change vs pretrained (95% CI) | NMI | kept % "
                         "| clusters | emotion micro-F1 % |")
    assert lines[-3].startswith("| round 1 |") and lines[-1].startswith("Systems: mfcc_stats = ")
    assert re.search(r"\| [+-]\d+% \[[+-]\d+, [+-]\d+\] \|", lines[-3])  # round 1 against SDPN, paired
    assert "SDPN = SDPN (self-supervised, DINO family) started from a contrastive" in lines[-1]
    assert "round k = SDPN followed by k rounds" in lines[-1]
    # the SDPN run started from the warm start's export
    inputs = json.loads((folder / "pretraining" / "training_inputs.json").read_text())
    assert os.path.dirname(inputs["init_from"]["path"]) == str(folder / "warm_start" / "pretrained")


def test_pipeline_killed_in_round_one_resumes_to_the_same_table(tmp_path):
    straight = run(tmp_path / "straight")
    output = straight.communicate(timeout=600)[0]
    assert straight.returncode == 0, output[-3000:]
    check_console(output, tmp_path / "straight")

    killed = tmp_path / "killed"
    process = run(killed)
    deadline = time.time() + 600
    while not (killed / "round1" / "labels" / "report.json").exists():
        assert process.poll() is None and time.time() < deadline, "pipeline ended before round 1"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "results.md").exists()

    resumed = run(killed)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert "[2/8] SDPN pretraining: done before | loss " in output  # finished stages are skipped
    first = json.loads((tmp_path / "straight" / "results.json").read_text())
    second = json.loads((killed / "results.json").read_text())
    assert second == first
    assert [row["system"] for row in first] == ["mfcc_stats", "SDPN", "round 1"]


def test_a_failed_stage_raises_stage_failed_and_a_recipe_prints_one_line(tmp_path, capsys):
    stages = StageRunner()
    with pytest.raises(StageFailed) as failure:  # the recipe stops: no train_csv (exit 2)
        stages.train_dino("hparams/demo/dino_ecapa.yaml", "", tmp_path / "dino", name="DINO pretraining")
    assert failure.value.exit_code == 2 and "train_dino" in " ".join(failure.value.command)

    @clean_exit
    def main():
        raise failure.value

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("error: stage DINO pretraining failed (exit 2); its output is in ")
    assert "stage_output.log; rerun the pipeline" in message


def test_a_signal_to_the_pipeline_stops_its_training_stage_with_a_checkpoint_and_status_75(tmp_path, capsys):
    train_csv = tone_corpus(str(tmp_path / "data"), count=8)
    folder = tmp_path / "dino"
    finished = threading.Event()

    def sigterm_once_training_checkpointed():  # as a scheduler signals the pipeline's process
        while not finished.is_set():
            if list((folder / "save").glob("CKPT+*")):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.05)

    signaller = threading.Thread(target=sigterm_once_training_checkpointed)
    signaller.start()
    try:
        with pytest.raises(Preempted) as stop:
            StageRunner().train_dino("hparams/demo/dino_ecapa.yaml", train_csv, folder,
                                     {**TINY["pretraining_overrides"], "number_of_epochs": 100}, name="DINO pretraining")
    finally:
        finished.set()
        signaller.join()
    assert str(stop.value) == (f"stage DINO pretraining was preempted and saved a checkpoint (its output is in "
                               f"{folder / 'stage_output.log'}); rerun the pipeline to resume")
    assert "preempted: SIGTERM during training" in (folder / "stage_output.log").read_text()

    @clean_exit
    def main():
        raise stop.value

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == PREEMPTED_EXIT_STATUS
    assert capsys.readouterr().err == f"preempted: {stop.value}\n"


@pytest.mark.parametrize("argv, share, pretraining", [
    ([], None, ["train_dino", "train_dino"]),
    (["--round_gate={heldout_share: 0.2}"], 0.2, ["train_dino", "train_dino"]),
    (["--warm_start_hparams=null", "--pretraining_hparams=hparams/demo/dino_ecapa.yaml"], None, ["train_dino"]),
    (["--warm_start_hparams=null", "--dino_hparams=hparams/demo/dino_ecapa.yaml"], None, ["train_dino"]),  # old key
])
def test_the_documented_pipeline_overrides_load_and_plan_their_stages(tmp_path, argv, share, pretraining, caplog):
    """The README's commands: the gate switched on by its share, the paper's DINO without a warm start
    (also under the key's old name, with a deprecation line)."""
    hparams = load_recipe(["hparams/demo/pipeline.yaml", f"--output_folder={tmp_path}", *argv], usage="",
                          default_hparams="hparams/demo/pipeline.yaml", settings=RUN_PIPELINE,
                          reads=RUN_PIPELINE_KEYS, renamed=RUN_PIPELINE_RENAMED)[3]
    assert ("--dino_hparams is deprecated: use --pretraining_hparams" in caplog.text) == ("--dino_hparams" in " ".join(argv))
    if len(pretraining) == 1:
        assert hparams["pretraining_hparams"] == "hparams/demo/dino_ecapa.yaml"
    pipeline = Pipeline(hparams)
    assert pipeline.gate_share() == share
    plan = pipeline.plan()
    assert plan[:len(pretraining) + 1] == [*pretraining, "eval_verification"]
    # one after the pretraining, one per round, and 2 more per round for the gate
    assert plan.count("eval_verification") == 1 + hparams["rounds"] * (1 + (2 if share else 0))
