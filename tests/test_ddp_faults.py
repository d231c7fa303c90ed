"""DINO training under torchrun (2 CPU processes, gloo): it trains and checkpoints; one rank killed
mid-training or during a checkpoint save, or sent SIGTERM alone, resumes when rerun and ends with
the weights and log of an uninterrupted 2-process run."""
import os
import signal
import subprocess
import sys

import pytest
import torch
from dino_setup import FAULT_RUNNER, REPO, SAVES_PER_CHECKPOINT, TINY_OVERRIDES, fault_env, tone_corpus

from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.errors import PREEMPTED_EXIT_STATUS

DEMO_YAML = os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml")


def failure_report(stderr: str) -> str:
    """The lines of a failed torchrun that say why (per-rank errors), then its last lines."""
    causes = [line for line in stderr.splitlines()
              if any(word in line for word in ("Error", "error:", "terminate", "what()", "Abort"))]
    return "\n".join(causes[:40]) + "\n...\n" + stderr[-2000:]


def torchrun(train_csv, output_folder, *extra, fault=None, rank=None):
    """train_dino under torchrun, 2 processes x 2 steps per epoch x 2 epochs, with ``fault`` on
    rank ``rank`` (fault_runner); its whole process group is killed if it hangs."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        FAULT_RUNNER, "train_dino", DEMO_YAML, f"--train_csv={train_csv}", f"--output_folder={output_folder}",
        "--number_of_epochs=2", "--distributed_backend=gloo", "--device=cpu", *TINY_OVERRIDES, *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=fault_env(fault, rank), cwd=REPO, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The corpus (16 utterances: 2 steps of 4 per rank and epoch) and an uninterrupted run's folder."""
    folder = tmp_path_factory.mktemp("ddp")
    train_csv = tone_corpus(str(folder / "data"), count=16)
    result = torchrun(train_csv, folder / "straight")
    assert result.returncode == 0, failure_report(result.stderr)
    return train_csv, folder / "straight"


def test_two_process_cpu_ddp_trains_and_checkpoints(straight):
    _, output = straight
    assert len(list((output / "save").glob("CKPT+*"))) == 2
    log = (output / "train_log.txt").read_text()
    assert "epoch: 1, steps: 2," in log and "epoch: 2, steps: 4," in log  # each rank saw half the data
    assert (output / "pretrained" / "embedding_model.ckpt").is_file()
    assert not (output / "run.lock").exists()


def test_a_rank_killed_or_signalled_resumes_to_the_uninterrupted_run(tmp_path, straight):
    train_csv, straight_folder = straight
    folder = tmp_path / "faulty"
    every_step = "--ckpt_interval_steps=1"
    # rank 1 killed after step 3 (mid-epoch 2): rank 0 fails in its next collective
    killed = torchrun(train_csv, folder, every_step, fault="KILL@step:3", rank=1)
    assert killed.returncode != 0 and not (folder / "pretrained").exists()
    # rank 0 killed halfway through writing the resumed run's first checkpoint (after step 3)
    killed = torchrun(train_csv, folder, every_step, fault=f"KILL@save:{SAVES_PER_CHECKPOINT // 2}", rank=0)
    assert killed.returncode != 0
    assert [path.name for path in (folder / "save").iterdir() if path.name.startswith(".staging")]
    # SIGTERM to rank 1 alone after step 3: both ranks stop after it, checkpoint, exit 75
    stopped = torchrun(train_csv, folder, every_step, fault="TERM@step:1", rank=1)
    assert stopped.returncode != 0  # torchrun's own status when a worker fails
    assert stopped.stderr.count(f"exitcode  : {PREEMPTED_EXIT_STATUS} ") == 2, failure_report(stopped.stderr)
    assert stopped.stderr.count("preempted: ") == 1  # the main process's line
    assert "stopped after optimiser step 3 and saved a checkpoint" in stopped.stderr
    assert "Removing an incomplete checkpoint" in stopped.stdout  # the killed save's staging folder

    resumed = torchrun(train_csv, folder, every_step)
    assert resumed.returncode == 0, failure_report(resumed.stderr)
    expected, got = (torch.load(f / "pretrained" / "embedding_model.ckpt") for f in (straight_folder, folder))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    assert (folder / "train_log.txt").read_text() == (straight_folder / "train_log.txt").read_text()
