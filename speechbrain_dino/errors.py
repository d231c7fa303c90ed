"""The project's exceptions: bad user input, a pipeline stage that failed, a preempted run.

Every problem a user can fix (a missing or corrupt audio file, a malformed manifest or trial row,
an inconsistent option) is raised as :class:`DataError`, whose message names the file and, where
there is one, the row. A stage of the chained pipeline whose process ended with an error raises
:class:`StageFailed` (the stage printed its own cause above). Recipes catch both at the top and
print that single line instead of a traceback from deep inside torch. A run stopped by a
preemption signal after saving a checkpoint raises :class:`Preempted`; recipes print its line and
exit with :data:`PREEMPTED_EXIT_STATUS`.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Exit status of a run stopped by a preemption signal once its checkpoint is saved: 75 is
#: ``EX_TEMPFAIL`` of ``sysexits.h``, "a temporary failure; the user is invited to retry"
#: (distinct from 2, an error to fix, and from 128 + N, killed by signal N).
PREEMPTED_EXIT_STATUS = 75


class DataError(ValueError):
    """Bad input data or options, with the file and row where it was found.

    Arguments
    ---------
    message : str
        What is wrong and, ideally, how to fix it.
    path : str or PathLike, optional
        The file (or folder) the problem was found in.
    row : int, optional
        1-based line number in ``path`` (the header of a CSV is line 1).
    """

    def __init__(
        self, message: str, path: Optional[PathLike] = None, row: Optional[int] = None
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.row = row
        where = ""
        if self.path is not None:
            where = self.path if row is None else f"{self.path}, line {row}"
            where += ": "
        super().__init__(where + message)


def os_error_message(error: OSError) -> str:
    """An operating-system error in one line: the path, then the reason (e.g. a folder that
    cannot be written: ``out/results.json: Permission denied``)."""
    reason = error.strerror or first_line(error)
    return f"{error.filename}: {reason}" if error.filename else reason


def first_line(error: BaseException) -> str:
    """An exception's first message line (a library's message without its traceback noise)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class StageFailed(RuntimeError):
    """A pipeline stage (a recipe run as a subprocess) exited with an error.

    Arguments
    ---------
    stage : str
        The stage's name, e.g. ``"round 1: AAM fine-tuning"``.
    exit_code : int
        The process's exit status.
    command : sequence of str
        The command that ran it (to rerun it alone).
    log_path : PathLike, optional
        The file holding the stage's output.
    """

    def __init__(
        self, stage: str, exit_code: int, command: Sequence[str], log_path: Optional[PathLike] = None
    ) -> None:
        self.stage = stage
        self.exit_code = exit_code
        self.command = list(command)
        self.log_path = log_path
        output = f"its output is in {os.fspath(log_path)}; " if log_path is not None else ""
        super().__init__(
            f"stage {stage} failed (exit {exit_code}); {output}rerun the pipeline to resume it, "
            f"or run alone: {' '.join(self.command)}"
        )


class Preempted(Exception):
    """A run stopped by a preemption signal (SIGTERM, SIGUSR1) after saving what a rerun needs to
    resume; the message says what was saved and how to resume."""
