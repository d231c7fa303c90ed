"""Fault injection: a training process killed, even inside a checkpoint save, or whose writes fail
for real (a file-size limit), resumes when rerun and ends with the weights of an uninterrupted run."""
import functools
import os
import resource
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
#: A file-size limit between the tiny run's largest files (the optimiser's, about 490 kB) and the
#: others (the student's, about 220 kB; the logs).
FILE_SIZE_LIMIT = 300_000


def train(train_csv, output_folder, fault=None, file_size_limit=None):
    """Runs train_dino in a fresh process with ``fault`` (``SBDINO_FAULT``, see fault_runner) and
    files limited to ``file_size_limit`` bytes (RLIMIT_FSIZE: writes past it fail with EFBIG)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.pop("SBDINO_FAULT", None)
    if fault:
        env["SBDINO_FAULT"] = fault
    command = [
        sys.executable, RUNNER, "train_dino", DEMO_YAML, f"--train_csv={train_csv}",
        f"--output_folder={output_folder}", "--number_of_epochs=2", "--ckpt_interval_steps=1", *TINY_OVERRIDES,
    ]
    limit = None if file_size_limit is None else functools.partial(
        resource.setrlimit, resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit)
    )
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, preexec_fn=limit)


def weights(output_folder):
    return torch.load(os.path.join(output_folder, "pretrained", "embedding_model.ckpt"))


def checkpoint_names(save):
    return sorted(path.name for path in save.iterdir())


def test_kills_and_a_real_write_failure_during_saves_resume_to_the_uninterrupted_weights(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)
    straight = train(train_csv, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    faulty = tmp_path / "faulty"
    save = faulty / "save"
    # the first save of the first checkpoint: nothing complete yet, the rerun starts afresh
    assert train(train_csv, faulty, "KILL@save:1").returncode == -9
    assert not any(path.name.startswith("CKPT") for path in save.iterdir())
    # halfway through the third checkpoint's files (the unresumable case)
    assert train(train_csv, faulty, f"KILL@save:{SAVES_PER_CHECKPOINT + 4}").returncode == -9
    assert any(path.name.startswith(".staging") for path in save.iterdir())
    # torch.save past a file-size limit (as into a full disk): one error line naming the folder,
    # the partial checkpoint removed, the complete one kept
    complete = [name for name in checkpoint_names(save) if name.startswith("CKPT")]
    limited = train(train_csv, faulty, file_size_limit=FILE_SIZE_LIMIT)
    assert limited.returncode == 2, limited.stderr[-3000:]
    errors = [line for line in limited.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, limited.stderr[-3000:]
    assert errors[0].startswith(f"error: {save}: cannot write a checkpoint (torch.save failed: ")
    assert f"a file-size limit of {FILE_SIZE_LIMIT} bytes" in errors[0] and "rerun to resume" in errors[0]
    assert "Traceback" not in limited.stderr
    assert checkpoint_names(save) == complete
    # the killed run left its lock: taken over, since its process is gone
    assert f"Taking over the stale lock {faulty / 'run.lock'}" in limited.stderr

    resumed = train(train_csv, faulty)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = weights(tmp_path / "straight"), weights(faulty)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    last = (tmp_path / "straight" / "train_log.txt").read_text().splitlines()[-1]
    assert (faulty / "train_log.txt").read_text().splitlines()[-1] == last
