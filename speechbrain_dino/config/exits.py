"""How every command of the project ends: one ``error:`` line and status 2 for bad input, one
``preempted:`` line and status 75 for a run stopped by a preemption signal, never a traceback."""
from __future__ import annotations

import functools
import gc
import sys
from typing import Callable

import torch
from speechbrain.utils.distributed import if_main_process

from speechbrain_dino.errors import (
    PREEMPTED_EXIT_STATUS,
    DataError,
    Preempted,
    StageFailed,
    os_error_message,
)


def data_error_message(error: DataError) -> str:
    """The message of a DataError, also when a DataLoader worker raised it.

    PyTorch re-raises a worker's exception with the worker's whole traceback as its message;
    the original message is its last line, after ``"...DataError: "``.
    """
    text = str(error).strip()
    if "Traceback" not in text:
        return text
    return text.splitlines()[-1].split("DataError: ", 1)[-1]


def clean_exit(main: Callable[..., None]) -> Callable[..., None]:
    """Runs ``main``; a :class:`DataError`, a failed pipeline stage (:class:`StageFailed`) or an
    operating-system error (a folder that cannot be written, a full disk) becomes
    ``error: <message>`` on stderr and exit 2. A run stopped by a preemption signal
    (:class:`Preempted`, its checkpoint saved) prints ``preempted: <message>`` (the main process)
    and exits with :data:`PREEMPTED_EXIT_STATUS` (75).

    After a normal end or a preemption under ``torchrun``, the process group is ended on every
    rank together: first a garbage collection, so the Brain and its DDP wrappers (kept alive by
    the Brain <-> Checkpointer reference cycle) free their reducers now rather than during
    interpreter shutdown, where destroying their gloo threads intermittently aborted a rank
    ("terminate called without an active exception"); then a barrier and
    ``destroy_process_group``.
    """

    @functools.wraps(main)
    def guarded(*args, **kwargs) -> None:
        try:
            main(*args, **kwargs)
        except Preempted as stop:
            if if_main_process():
                print(f"preempted: {stop}", file=sys.stderr)
            _end_process_group()
            sys.exit(PREEMPTED_EXIT_STATUS)
        except DataError as error:
            print(f"error: {data_error_message(error)}", file=sys.stderr)
            sys.exit(2)
        except StageFailed as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except OSError as error:
            print(f"error: {os_error_message(error)}", file=sys.stderr)
            sys.exit(2)
        _end_process_group()

    return guarded


def _end_process_group() -> None:
    """Under torchrun, ends the process group on every rank together (see :func:`clean_exit`)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
