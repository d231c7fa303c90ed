"""Fault injection: a training process killed or out of disk space, even inside a checkpoint save,
resumes when rerun and ends with the weights of an uninterrupted run."""
import os
import subprocess
import sys

import torch
from dino_setup import TINY_OVERRIDES, tone_corpus

from speechbrain_dino.config.loading import HPARAMS_FOLDER

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(REPO, "tests", "fault_runner.py")
DEMO_YAML = os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml")
#: torch.save calls per checkpoint of the tiny DINO run (student, teacher, heads, loss, optimiser,
#: RNG and epoch averages); a checkpoint after every step, 3 steps per epoch, 2 epochs.
SAVES_PER_CHECKPOINT = 8


def train(train_csv, output_folder, fault=None):
    """Runs train_dino in a fresh process with ``fault`` (``SBDINO_FAULT``, see fault_runner)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.pop("SBDINO_FAULT", None)
    if fault:
        env["SBDINO_FAULT"] = fault
    command = [
        sys.executable, RUNNER, "train_dino", DEMO_YAML, f"--train_csv={train_csv}",
        f"--output_folder={output_folder}", "--number_of_epochs=2", "--ckpt_interval_steps=1", *TINY_OVERRIDES,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def weights(output_folder):
    return torch.load(os.path.join(output_folder, "pretrained", "embedding_model.ckpt"))


def test_kills_and_a_full_disk_during_saves_resume_to_the_uninterrupted_weights(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)
    straight = train(train_csv, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    faulty = tmp_path / "faulty"
    save = faulty / "save"
    # the first save of the first checkpoint: nothing complete yet, the rerun starts afresh
    assert train(train_csv, faulty, "kill@1").returncode == -9
    assert not any(path.name.startswith("CKPT") for path in save.iterdir())
    # halfway through the third checkpoint's files (the unresumable case)
    assert train(train_csv, faulty, f"kill@{SAVES_PER_CHECKPOINT + 4}").returncode == -9
    assert any(path.name.startswith(".staging") for path in save.iterdir())
    # a full disk in the middle of a later save: one error line, the partial checkpoint removed
    full = train(train_csv, faulty, f"enospc@{2 * SAVES_PER_CHECKPOINT + 5}")
    assert full.returncode == 2, full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "rerun to resume" in errors[0]
    assert "Traceback" not in full.stderr
    assert not any(path.name.startswith(".staging") for path in save.iterdir())

    resumed = train(train_csv, faulty)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = weights(tmp_path / "straight"), weights(faulty)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    last = (tmp_path / "straight" / "train_log.txt").read_text().splitlines()[-1]
    assert (faulty / "train_log.txt").read_text().splitlines()[-1] == last
