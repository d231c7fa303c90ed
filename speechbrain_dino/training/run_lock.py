"""One run per output folder: a lock file held while a recipe runs in it.

Two runs started with the same ``--output_folder`` would both resume its checkpoints, write the
same files and both end with exit status 0. Every recipe and the pipeline hold
``<output_folder>/run.lock`` while they run (:func:`output_folder_lock`); a second run stops with
one line naming the holder's process. The lock is made with ``os.link`` from a complete temporary
file, which fails when the lock exists: atomic also on NFS and Lustre (the classic lock-file
method; ``flock`` may be unsupported there), and the file is never seen half-written. It records
its holder: host, process id and start time, the command, and SLURM's job id and restart count.

A **stale** lock, whose holder is gone, is taken over with a log line: on the same host when its
process no longer exists (or its id now names a process started at another time); on any host
when it belongs to an earlier start of the same SLURM job (a requeued job runs again with a higher
``SLURM_RESTART_COUNT``, and SLURM runs one start of a job at a time). A lock held from another
host cannot be checked otherwise: the error says to remove the file if that run is gone.
Under torchrun only the main process takes the lock; every rank learns the outcome.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from typing import Any, Dict, Iterator, Optional

from speechbrain.utils.distributed import if_main_process, main_process_only

from speechbrain_dino.errors import DataError, PathLike

logger = logging.getLogger(__name__)

#: The lock's name in the output folder.
LOCK_FILE = "run.lock"
#: Stale locks one run may take over before giving up (others keep taking the folder).
MAX_TAKEOVERS = 3
#: Characters of the holder's command shown in messages.
COMMAND_SHOWN = 160


def process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fin:
            return fin.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> Dict[str, Any]:
    """The lock's record of this process."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": process_start(os.getpid()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
    }


def is_stale(holder: Dict[str, Any], me: Dict[str, Any]) -> bool:
    """Whether the run that wrote ``holder`` is certainly gone, as seen from ``me`` (see the module)."""
    if holder.get("slurm_job") and holder["slurm_job"] == me["slurm_job"]:
        if holder.get("slurm_restart", 0) < me["slurm_restart"]:
            return True
    if holder.get("host") != me["host"]:
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    started = process_start(pid)
    return None not in (started, holder.get("process_start")) and started != holder["process_start"]


def describe(holder: Dict[str, Any]) -> str:
    """``process 123 on host, started ...: command`` for messages."""
    where = f"process {holder.get('pid')} on {holder.get('host')}"
    command = str(holder.get("command"))
    command = command if len(command) <= COMMAND_SHOWN else command[:COMMAND_SHOWN] + "..."
    return f"{where}, started {holder.get('started')}: {command}"


class RunLock:
    """The lock file of one output folder (see the module).

    Arguments
    ---------
    folder : PathLike
        The output folder (it must exist).
    """

    def __init__(self, folder: PathLike) -> None:
        self.path = os.path.join(os.fspath(folder), LOCK_FILE)
        self.record = this_process()
        self.text = json.dumps(self.record, indent=2) + "\n"

    def acquire(self) -> None:
        """Takes the lock, taking over a stale one.

        Raises
        ------
        DataError
            Another run holds it (the message names its process), or the file is not a lock.
        """
        for _ in range(MAX_TAKEOVERS + 1):
            if self._create():
                return
            held = self._read(self.path)
            if held is None:  # released in the meantime
                continue
            try:
                holder = json.loads(held)
            except ValueError:
                holder = None
            if not isinstance(holder, dict):
                raise DataError("is not a run's lock file: remove it if no run uses this folder", self.path)
            if not is_stale(holder, self.record):
                raise DataError(
                    f"the output folder is in use by another run ({describe(holder)}): wait for it to end "
                    f"or use another --output_folder; if that run is gone (e.g. its node failed), remove this file",
                    self.path,
                )
            self._take_over(held, holder)
        raise DataError("other runs keep taking this lock: use another --output_folder", self.path)

    def release(self) -> None:
        """Removes the lock if it is still this run's."""
        if self._read(self.path) == self.text:
            os.unlink(self.path)

    def _create(self) -> bool:
        """Links a complete temporary copy of this run's record to the lock's name; False when
        the lock exists."""
        temporary = f"{self.path}.{self.record['host']}.{self.record['pid']}"
        with open(temporary, "w", encoding="utf-8") as fout:
            fout.write(self.text)
        try:
            os.link(temporary, self.path)
            return True
        except FileExistsError:  # on NFS a link whose reply was lost still counts
            return os.stat(temporary).st_nlink == 2
        finally:
            os.unlink(temporary)

    def _take_over(self, held: str, holder: Dict[str, Any]) -> None:
        """Moves the stale lock ``held`` aside (so that of several runs taking it over, one
        succeeds); puts back a live lock that replaced it in the meantime."""
        aside = f"{self.path}.stale.{self.record['host']}.{self.record['pid']}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another run moved it first
            return
        if self._read(aside) == held:
            logger.warning(f"Taking over the stale lock {self.path} of {describe(holder)}: that run is gone")
        else:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        os.unlink(aside)

    @staticmethod
    def _read(path: str) -> Optional[str]:
        """A lock file's text (None when it does not exist)."""
        try:
            with open(path, encoding="utf-8") as fin:
                return fin.read()
        except FileNotFoundError:
            return None


def _acquire_on_main(lock: RunLock) -> Optional[str]:
    """Takes ``lock``; the error message, or None when taken."""
    os.makedirs(os.path.dirname(lock.path), exist_ok=True)
    try:
        lock.acquire()
    except DataError as error:
        return str(error)
    return None


@contextlib.contextmanager
def output_folder_lock(folder: PathLike) -> Iterator[None]:
    """Holds ``folder``'s lock (created with the folder if needed) while the block runs.

    Under torchrun the main process takes it and every rank raises its error.

    Raises
    ------
    DataError
        The folder is in use by another run.
    """
    lock = RunLock(folder)
    problem = main_process_only(_acquire_on_main)(lock)
    if problem is not None:
        raise DataError(problem)
    try:
        yield
    finally:
        if if_main_process():
            lock.release()
