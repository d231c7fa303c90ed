"""Runs a recipe with one injected fault, as a fresh process (the fault tests' hook).

    python tests/fault_runner.py <recipe> <hparams> --key=value...

``SBDINO_FAULT=<SIGNAL>@<event>:<n>`` makes the process send itself ``SIG<SIGNAL>`` (``KILL``,
``TERM``, ``USR1``) at the n-th ``<event>`` (1-based), a real signal delivered by the kernel:

- ``save``: a call of ``torch.save`` (the checkpoint's model, optimiser and state files), before
  it writes its file: ``KILL@save:n`` is a crash or an OOM kill in the middle of a save;
- ``step``: the end of a training step (``Brain.fit_batch``): ``KILL@step:n`` is a crash
  mid-epoch, ``TERM@step:n`` a batch scheduler's notice.

``SBDINO_FAULT_RANK=<r>`` limits the fault to the torchrun process of rank ``r`` (the others run
unchanged). Without ``SBDINO_FAULT`` the recipe runs unchanged. ``SBDINO_SAVE_COUNT=<file>``
writes the number of ``torch.save`` calls to ``<file>`` as each happens (to choose ``n``).
"""
from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
from typing import Callable, Optional

import speechbrain as sb
import torch


def with_signal(
    function: Callable, at: int, signum: int, after: bool = False, on_call: Optional[Callable[[int], None]] = None
) -> Callable:
    """``function`` wrapped to send ``signum`` to this process at its ``at``-th call (0: never),
    before the call or ``after`` it; ``on_call(n)`` is told the number of each call."""
    calls = {"n": 0}

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if on_call is not None:
            on_call(calls["n"])
        if calls["n"] == at and not after:
            os.kill(os.getpid(), signum)
        result = function(*args, **kwargs)
        if calls["n"] == at and after:
            os.kill(os.getpid(), signum)
        return result

    return wrapped


def write_count(count_file: str, n: int) -> None:
    """Records ``n`` in ``count_file`` (nothing without a file)."""
    if count_file:
        with open(count_file, "w", encoding="utf-8") as out:
            out.write(str(n))


def install_fault(fault: str, count_file: str) -> None:
    """Installs ``fault`` (``<SIGNAL>@<event>:<n>``, see the module; "" for none) and the save counter."""
    name, _, where = fault.partition("@")
    event, _, at = where.partition(":")
    signum = signal.Signals[f"SIG{name}"] if name else 0
    at = int(at) if at else 0
    torch.save = with_signal(
        torch.save, at if event == "save" else 0, signum, on_call=functools.partial(write_count, count_file)
    )
    if event == "step":
        sb.Brain.fit_batch = with_signal(sb.Brain.fit_batch, at, signum, after=True)


def main(argv) -> None:
    """Installs the fault named by the environment, then runs ``speechbrain_dino.recipes.<argv[0]>``."""
    fault = os.environ.get("SBDINO_FAULT", "")
    rank = os.environ.get("SBDINO_FAULT_RANK")
    if rank is not None and rank != os.environ.get("RANK", "0"):
        fault = ""
    install_fault(fault, os.environ.get("SBDINO_SAVE_COUNT", ""))
    importlib.import_module(f"speechbrain_dino.recipes.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
