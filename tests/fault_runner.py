"""Runs a recipe with one injected fault, as a fresh process (the fault-injection tests' hook).

    python tests/fault_runner.py <recipe> <hparams> --key=value...

``SBDINO_FAULT=<kind>@<n>`` makes the n-th call of ``torch.save`` in this process (1-based; the
checkpoint's model, optimiser and state files) fail before it writes its file:

- ``kill``: the process sends itself SIGKILL (a crash or an OOM kill in the middle of a save);
- ``enospc``: a truncated file is left and ``OSError(ENOSPC)`` raised (a full disk).

Without ``SBDINO_FAULT`` the recipe runs unchanged. ``SBDINO_SAVE_COUNT=<file>`` writes the number
of ``torch.save`` calls to ``<file>`` as each happens (to choose ``n``).
"""
from __future__ import annotations

import errno
import importlib
import os
import signal
import sys

import torch


def install_fault(kind: str, at: int, count_file: str) -> None:
    """Wraps ``torch.save`` so that its ``at``-th call fails as ``kind`` (see the module)."""
    original = torch.save
    calls = {"n": 0}

    def faulty_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if count_file:
            with open(count_file, "w", encoding="utf-8") as out:
                out.write(str(calls["n"]))
        if calls["n"] == at and kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if calls["n"] == at and kind == "enospc":
            with open(path, "wb") as partial:
                partial.write(b"PK\x03\x04truncated")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(obj, path, *args, **kwargs)

    torch.save = faulty_save


def main(argv) -> None:
    """Installs the fault named by the environment, then runs ``speechbrain_dino.recipes.<argv[0]>``."""
    kind, _, at = os.environ.get("SBDINO_FAULT", "none@0").partition("@")
    install_fault(kind, int(at), os.environ.get("SBDINO_SAVE_COUNT", ""))
    importlib.import_module(f"speechbrain_dino.recipes.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
