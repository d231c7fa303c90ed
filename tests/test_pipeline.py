"""The chained pipeline: a run killed during round 1 resumes and ends with the same table."""
import json
import os
import signal
import subprocess
import sys
import time

from speechbrain_dino.stages import override_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "synthetic": {"speakers": 12, "utterances": 4, "emotions": 2, "seed": 0, "min_seconds": 1.5, "max_seconds": 2.0},
    "heldout_speakers": 6,
    "baselines": ["mfcc_stats"],
    "rounds": 1,
    "dino_overrides": {
        "number_of_epochs": 2, "batch_size": 4, "embedding_dim": 32, "n_prototypes": 64,
        "encoder_kwargs": {"channels": [32, 32, 32, 32, 96], "attention_channels": 16, "se_channels": 16,
                           "lin_neurons": 32},
        "head_kwargs": {"hidden_size": 64, "bottleneck_size": 32},
        "crops": {"global_seconds": 1.0, "local_seconds": 0.5},
    },
    "pseudo_label_overrides": {"clustering": {"min_size": 2, "ahc_threshold": 0.5}},
    "aam_overrides": {"number_of_epochs": 3, "batch_size": 4, "crop_seconds": 1.0,
                      "schedule": {"frozen_epochs": 1, "margin_warmup_epochs": 1}},
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


def test_pipeline_killed_in_round_one_resumes_to_the_same_table(tmp_path):
    straight = run(tmp_path / "straight")
    output = straight.communicate(timeout=600)[0]
    assert straight.returncode == 0, output[-3000:]
    assert "| round 1 |" in output and "| DINO |" in output and "| mfcc_stats |" in output

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
    assert "DINO pretraining ===" not in output  # finished stages are skipped
    first = json.loads((tmp_path / "straight" / "results.json").read_text())
    second = json.loads((killed / "results.json").read_text())
    assert second == first
    assert [row["system"] for row in first] == ["mfcc_stats", "DINO", "round 1"]
