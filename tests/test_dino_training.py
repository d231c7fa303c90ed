"""DINO training through the recipe: resume after a kill, the contrastive baseline, the exported
encoder and its snapshots (2-process CPU DDP: test_ddp_faults.py)."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch
from dino_setup import TINY_OVERRIDES
from dino_setup import run_recipe as run_named_recipe
from dino_setup import tone_corpus

from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.training.brains.ssl import SelfDistillationBrain

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "train_dino.py")
DEMO_YAML = os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml")


def run_recipe(train_csv, output_folder, *extra):
    run_named_recipe(
        "train_dino", DEMO_YAML, f"--train_csv={train_csv}", f"--output_folder={output_folder}", *TINY_OVERRIDES, *extra
    )


def final_weights(output_folder):
    return torch.load(os.path.join(output_folder, "pretrained", "embedding_model.ckpt"))


class Killed(Exception):
    """Stands for the process being killed mid-epoch."""


def killed_at_step(monkeypatch, step, train_csv, output_folder, *extra):
    """Runs the recipe until the end of optimiser step ``step`` (then "killed"), then reruns it."""
    original = SelfDistillationBrain.on_fit_batch_end
    steps = {"done": 0}

    def kill_at_step(self, *args, **kwargs):
        original(self, *args, **kwargs)
        steps["done"] += 1
        if steps["done"] == step:
            raise Killed()

    monkeypatch.setattr(SelfDistillationBrain, "on_fit_batch_end", kill_at_step)
    with pytest.raises(Killed):
        run_recipe(train_csv, output_folder, "--number_of_epochs=2", *extra)
    assert not os.path.exists(output_folder / "pretrained")
    assert glob.glob(str(output_folder / "save" / "CKPT*")), "no checkpoint was written before the kill"
    monkeypatch.setattr(SelfDistillationBrain, "on_fit_batch_end", original)
    run_recipe(train_csv, output_folder, "--number_of_epochs=2", *extra)


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)  # 3 steps per epoch
    run_recipe(train_csv, tmp_path / "straight", "--number_of_epochs=2")
    # an intra-epoch checkpoint was written after step 4
    killed_at_step(monkeypatch, 5, train_csv, tmp_path / "killed", "--ckpt_interval_steps=1")

    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    # the resumed epoch logs the averages over all its batches, those before the kill included
    resumed_log = (tmp_path / "killed" / "train_log.txt").read_text().splitlines()
    straight_log = (tmp_path / "straight" / "train_log.txt").read_text().splitlines()
    assert resumed_log[-1].startswith("epoch: 2, steps: 6")
    assert resumed_log[-1] == straight_log[-1]


def test_resume_from_an_end_of_epoch_checkpoint_logs_the_epochs_own_loss(tmp_path, monkeypatch):
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)  # 3 steps per epoch
    run_recipe(train_csv, tmp_path / "straight", "--number_of_epochs=2")
    killed_at_step(monkeypatch, 4, train_csv, tmp_path / "killed")  # only epoch 1's checkpoint exists
    straight_log = (tmp_path / "straight" / "train_log.txt").read_text().splitlines()
    assert (tmp_path / "killed" / "train_log.txt").read_text().splitlines()[-1] == straight_log[-1]


def test_contrastive_baseline_trains_and_exports(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)
    contrastive_yaml = os.path.join(HPARAMS_FOLDER, "demo", "contrastive_ecapa.yaml")
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("--n_prototypes", "--student_head"))]
    run_named_recipe(
        "train_dino", contrastive_yaml, f"--train_csv={train_csv}", f"--output_folder={tmp_path / 'c'}",
        "--number_of_epochs=4", "--projection_head={hidden_size: 64, projection_size: 32}", *tiny,
    )
    log = (tmp_path / "c" / "train_log.txt").read_text()
    losses = [float(line.split("train loss: ")[1].split(",")[0]) for line in log.splitlines()]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert "teacher" not in log
    assert (tmp_path / "c" / "pretrained" / "embedding_model.ckpt").is_file()


def test_export_encoder_student_exports_the_student_backbone(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=8)
    output = tmp_path / "student"
    run_recipe(train_csv, output, "--number_of_epochs=1", "--export_encoder=student")
    checkpoint = glob.glob(str(output / "save" / "CKPT*"))[0]
    student, teacher = (torch.load(os.path.join(checkpoint, f"{name}.ckpt")) for name in ("student", "teacher"))
    exported = final_weights(output)
    for key, value in exported.items():
        torch.testing.assert_close(value, student[key], rtol=0, atol=0, msg=key)
    weights = [key for key, value in exported.items() if value.dim() > 1]
    assert any(not torch.equal(exported[key], teacher[key]) for key in weights), "the teacher is exported"


def test_snapshots_export_the_encoder_at_chosen_steps_without_changing_the_run(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)  # 3 steps per epoch
    run_recipe(train_csv, tmp_path / "plain", "--number_of_epochs=2")
    run_recipe(train_csv, tmp_path / "snap", "--number_of_epochs=2", "--export_steps=[2, 6]")
    plain, snapped = final_weights(tmp_path / "plain"), final_weights(tmp_path / "snap")
    for key in plain:
        torch.testing.assert_close(snapped[key], plain[key], rtol=0, atol=0, msg=key)
    last = torch.load(tmp_path / "snap" / "snapshots" / "step6" / "embedding_model.ckpt")
    early = torch.load(tmp_path / "snap" / "snapshots" / "step2" / "embedding_model.ckpt")
    assert all(torch.equal(last[key], plain[key]) for key in plain)  # step 6 is the end of the run
    assert any(not torch.equal(early[key], plain[key]) for key in plain if plain[key].is_floating_point())
    info = json.loads((tmp_path / "snap" / "snapshots" / "step2" / "speechbrain_dino.json").read_text())
    assert info["snapshot_step"] == 2 and info["optimizer_steps"] == 2
    assert sorted(os.listdir(tmp_path / "snap" / "snapshots")) == ["step2", "step6"]


def test_bad_export_steps_are_one_error_line(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=8)
    command = [sys.executable, RECIPE, DEMO_YAML, f"--train_csv={train_csv}", f"--output_folder={tmp_path / 'bad'}",
               *TINY_OVERRIDES, "--export_steps=[0, 3]"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --export_steps=[0, 3]")
    assert "Traceback" not in result.stderr


def test_a_yaml_naming_the_former_brain_class_still_trains_with_a_deprecation_line(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=8)
    run_recipe(train_csv, tmp_path / "old", "--number_of_epochs=1",
               "--brain_class=!name:speechbrain_dino.training.brains.ssl.DINOBrain")
    assert "brain_class DINOBrain is deprecated" in (tmp_path / "old" / "log.txt").read_text()
    assert (tmp_path / "old" / "pretrained" / "embedding_model.ckpt").is_file()
