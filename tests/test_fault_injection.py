"""Fault injection in fresh processes: a training run killed (even inside a checkpoint save), whose
writes fail for real (a file-size limit), or stopped by a preemption signal (SIGTERM or SIGUSR1:
a checkpoint, exit status 75) resumes when rerun and ends with the weights of an uninterrupted run."""
import functools
import os
import resource
import subprocess
import sys

import pytest
import torch
from dino_setup import FAULT_RUNNER, SAVES_PER_CHECKPOINT, TINY_OVERRIDES, fault_env, tone_corpus

from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.errors import PREEMPTED_EXIT_STATUS

DEMO_YAML = os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml")
#: A file-size limit between the tiny run's largest files (the optimiser's, about 490 kB) and the
#: others (the student's, about 220 kB; the logs).
FILE_SIZE_LIMIT = 300_000
#: The fault runs' intra-epoch checkpoints: after every step.
EVERY_STEP = ["--ckpt_interval_steps=1"]


def train(train_csv, output_folder, *extra, fault=None, file_size_limit=None):
    """Runs train_dino (2 epochs of 3 steps) in a fresh process with ``fault`` (``SBDINO_FAULT``,
    see fault_runner) and files limited to ``file_size_limit`` bytes (RLIMIT_FSIZE: writes past it
    fail with EFBIG)."""
    command = [
        sys.executable, FAULT_RUNNER, "train_dino", DEMO_YAML, f"--train_csv={train_csv}",
        f"--output_folder={output_folder}", "--number_of_epochs=2", *TINY_OVERRIDES, *extra,
    ]
    limit = None if file_size_limit is None else functools.partial(
        resource.setrlimit, resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit)
    )
    env = fault_env(fault)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, preexec_fn=limit)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The tiny corpus (12 utterances: 3 steps per epoch) and its uninterrupted run's folder."""
    folder = tmp_path_factory.mktemp("faults")
    train_csv = tone_corpus(str(folder / "data"), count=12)
    result = train(train_csv, folder / "straight")
    assert result.returncode == 0, result.stderr[-3000:]
    return train_csv, folder / "straight"


def assert_same_weights(folder, expected_folder):
    expected, got = (torch.load(os.path.join(f, "pretrained", "embedding_model.ckpt")) for f in (expected_folder, folder))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


def checkpoint_names(save):
    return sorted(path.name for path in save.iterdir())


def test_kills_and_a_real_write_failure_during_saves_resume_to_the_uninterrupted_weights(tmp_path, straight):
    train_csv, straight_folder = straight
    faulty = tmp_path / "faulty"
    save = faulty / "save"
    # the first save of the first checkpoint: nothing complete yet, the rerun starts afresh
    assert train(train_csv, faulty, *EVERY_STEP, fault="KILL@save:1").returncode == -9
    assert not any(path.name.startswith("CKPT") for path in save.iterdir())
    # halfway through the third checkpoint's files (the unresumable case)
    assert train(train_csv, faulty, *EVERY_STEP, fault=f"KILL@save:{SAVES_PER_CHECKPOINT + 4}").returncode == -9
    assert any(path.name.startswith(".staging") for path in save.iterdir())
    # torch.save past a file-size limit (as into a full disk): one error line naming the folder,
    # the partial checkpoint removed, the complete one kept
    complete = [name for name in checkpoint_names(save) if name.startswith("CKPT")]
    limited = train(train_csv, faulty, *EVERY_STEP, file_size_limit=FILE_SIZE_LIMIT)
    assert limited.returncode == 2, limited.stderr[-3000:]
    errors = [line for line in limited.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, limited.stderr[-3000:]
    assert errors[0].startswith(f"error: {save}: cannot write a checkpoint (torch.save failed: ")
    assert f"a file-size limit of {FILE_SIZE_LIMIT} bytes" in errors[0] and "rerun to resume" in errors[0]
    assert "Traceback" not in limited.stderr
    assert checkpoint_names(save) == complete
    # the killed run left its lock: taken over, since its process is gone
    assert f"Taking over the stale lock {faulty / 'run.lock'}" in limited.stderr

    resumed = train(train_csv, faulty, *EVERY_STEP)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(faulty, straight_folder)
    last = (straight_folder / "train_log.txt").read_text().splitlines()[-1]
    assert (faulty / "train_log.txt").read_text().splitlines()[-1] == last


def preempted(result, signal_name, step, save):
    """The run stopped for ``signal_name`` after ``step``: one line, status 75, no traceback."""
    assert result.returncode == PREEMPTED_EXIT_STATUS, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(("preempted:", "error:"))]
    assert lines == [f"preempted: {signal_name} during training: stopped after optimiser step {step} and saved a "
                     f"checkpoint in {save}; rerun the same command to resume"], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_signals_mid_epoch_and_at_an_epoch_end_resume_to_the_uninterrupted_run(tmp_path, straight):
    train_csv, straight_folder = straight
    folder = tmp_path / "preempted"
    save = folder / "save"
    # SIGTERM in the middle of epoch 1
    preempted(train(train_csv, folder, fault="TERM@step:2"), "SIGTERM", 2, save)
    assert not (folder / "pretrained").exists() and not (folder / "run.lock").exists()
    # SIGUSR1 while the resumed run writes epoch 1's checkpoint (its first torch.save)
    preempted(train(train_csv, folder, fault="USR1@save:1"), "SIGUSR1", 3, save)
    assert (folder / "train_log.txt").read_text().startswith("epoch: 1, steps: 3,")
    # SIGTERM in the middle of epoch 2 (the second step of this run)
    preempted(train(train_csv, folder, fault="TERM@step:2"), "SIGTERM", 5, save)

    resumed = train(train_csv, folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(folder, straight_folder)
    assert (folder / "train_log.txt").read_text() == (straight_folder / "train_log.txt").read_text()
