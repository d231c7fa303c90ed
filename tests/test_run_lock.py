"""One run per output folder: a second run into a folder in use is refused with one line naming
the holder; a stale lock (its process gone) is taken over with a log line."""
import json
import logging
import os
import socket
import subprocess
import sys

import pytest
from dino_setup import TINY_OVERRIDES, tone_corpus

from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.errors import DataError
from speechbrain_dino.training import run_lock
from speechbrain_dino.training.run_lock import LOCK_FILE, RunLock, output_folder_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_lock(folder, **fields):
    """A lock as another run would have left it (its fields overridden by ``fields``)."""
    record = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": None, "started": "earlier",
              "command": "train_dino.py other run", "slurm_job": None, "slurm_restart": 0, **fields}
    (folder / LOCK_FILE).write_text(json.dumps(record))
    return record


def gone_pid():
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def holder(folder):
    return json.loads((folder / LOCK_FILE).read_text())


def test_the_lock_is_held_while_the_block_runs_and_released_after(tmp_path):
    with output_folder_lock(tmp_path / "run"):
        assert holder(tmp_path / "run")["pid"] == os.getpid()
        with pytest.raises(DataError, match=f"in use by another run .process {os.getpid()} on {socket.gethostname()}"):
            RunLock(tmp_path / "run").acquire()
    assert os.listdir(tmp_path / "run") == []


def test_a_lock_held_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
    write_lock(tmp_path, host="node-17", pid=1234)
    with pytest.raises(DataError) as raised:
        RunLock(tmp_path).acquire()
    assert str(raised.value).startswith(f"{tmp_path / LOCK_FILE}: the output folder is in use by another run "
                                        "(process 1234 on node-17, started earlier: train_dino.py other run)")
    assert "if that run is gone (e.g. its node failed), remove this file" in str(raised.value)
    assert holder(tmp_path)["host"] == "node-17"


STALE = {
    "process gone": lambda: {"pid": gone_pid()},
    "process id reused": lambda: {"process_start": "1"},  # this process, started at another time
    "earlier start of the same SLURM job": lambda: {"host": "node-17", "slurm_job": "42", "slurm_restart": 0},
}


@pytest.mark.parametrize("case", STALE, ids=list(STALE))
def test_a_stale_lock_is_taken_over_with_a_log_line(tmp_path, caplog, monkeypatch, case):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    stale = write_lock(tmp_path, **STALE[case]())
    lock = RunLock(tmp_path)
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__):
        lock.acquire()
    assert holder(tmp_path) == lock.record
    assert caplog.messages == [f"Taking over the stale lock {tmp_path / LOCK_FILE} of process {stale['pid']} on "
                               f"{stale['host']}, started earlier: train_dino.py other run: that run is gone"]
    assert sorted(os.listdir(tmp_path)) == [LOCK_FILE]


def test_the_same_start_of_a_slurm_job_on_another_host_is_not_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    write_lock(tmp_path, host="node-17", slurm_job="42", slurm_restart=1)
    with pytest.raises(DataError, match="in use by another run"):
        RunLock(tmp_path).acquire()


def test_a_file_that_is_not_a_lock_is_left_alone(tmp_path):
    (tmp_path / LOCK_FILE).write_text("my notes\n")
    with pytest.raises(DataError, match="is not a run's lock file: remove it if no run uses this folder"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text() == "my notes\n"


def test_release_leaves_a_lock_taken_over_by_another_run(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    other = write_lock(tmp_path, host="node-17")
    lock.release()
    assert holder(tmp_path) == other


def run_while_locked(recipe, args, output, **kwargs):
    """Runs ``python -m speechbrain_dino.recipes.<recipe> *args`` while this test process holds
    ``output``'s lock (it is the first run); returns the finished process and ``output``'s listing
    as the second run left it."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", f"speechbrain_dino.recipes.{recipe}", *args, f"--output_folder={output}"]
    with output_folder_lock(output):
        second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, **kwargs)
        listing = sorted(os.listdir(output))
    return second, listing


def assert_refused(second, output):
    """The second run ended with exit status 2 and one error line naming the lock and its holder."""
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert errors[0].startswith(f"error: {output / LOCK_FILE}: the output folder is in use by another run "
                                f"(process {os.getpid()} on {socket.gethostname()}")


def test_a_second_training_into_a_folder_in_use_stops_before_writing(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=8)
    output = tmp_path / "run"
    second, listing = run_while_locked(
        "train_dino", [os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml"), f"--train_csv={train_csv}", *TINY_OVERRIDES],
        output)
    # nothing written: only the empty save/ that loading the YAML's checkpointer creates
    assert listing == [LOCK_FILE, "save"] and os.listdir(output / "save") == []
    assert_refused(second, output)


@pytest.mark.parametrize("recipe, hparams_file, inputs", [
    ("pseudo_label", "pseudo_label.yaml", ["--pretrained_path=exp/pretrained", "--train_csv=train.csv"]),
    ("eval_verification", "verification.yaml",
     ["--pretrained_path=exp/pretrained", "--test_csv=test.csv", "--trials=trials.txt"]),
    ("eval_emotion", "emotion.yaml", ["--pretrained_path=exp/pretrained", "--data_csv=emotion.csv"]),
])
def test_the_other_recipes_refuse_a_folder_in_use_before_reading_anything(tmp_path, recipe, hparams_file, inputs):
    """Pseudo-labelling and the evaluations write caches and results into their folder: a second run
    into a folder in use stops with one line before it reads its inputs (which need not exist)."""
    output = tmp_path / "run"
    second, listing = run_while_locked(recipe, [os.path.join(HPARAMS_FOLDER, hparams_file), *inputs], output, cwd=tmp_path)
    assert listing == [LOCK_FILE]
    assert_refused(second, output)
    assert not (output / LOCK_FILE).exists()
