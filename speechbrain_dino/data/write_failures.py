"""A write that failed (full disk, file-size limit, read-only folder), told in one line.

Python's file writes raise ``OSError``, but ``torch.save`` reports the same failures from its C++
writer as ``RuntimeError`` ("[enforce fail at inline_container.cc:...] unexpected pos ...",
"basic_ios::clear: iostream error"), without the operating system's reason.
:func:`is_write_failure` recognises both (a ``RuntimeError`` counts when it was raised inside
``torch.serialization``); :func:`write_failure_reason` says what is known: the system's reason,
or torch's message with the likely causes found on this machine (a file-size limit, little space
left on the folder's disk).
"""
from __future__ import annotations

import os
import resource
import shutil
import traceback

from speechbrain_dino.errors import PathLike, first_line

#: The module whose RuntimeErrors are write failures.
_TORCH_SERIALIZATION = os.path.join("torch", "serialization.py")


def is_write_failure(error: BaseException) -> bool:
    """True for an ``OSError`` and for a ``RuntimeError`` raised inside ``torch.save``."""
    if isinstance(error, OSError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    return any(frame.filename.endswith(_TORCH_SERIALIZATION) for frame in traceback.extract_tb(error.__traceback__))


def write_failure_reason(error: BaseException, folder: PathLike) -> str:
    """Why writing into ``folder`` failed, in one line (``error`` passed :func:`is_write_failure`)."""
    if isinstance(error, OSError):
        return error.strerror or first_line(error)
    causes = []
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        causes.append(f"a file-size limit of {limit} bytes is set (ulimit -f)")
    try:
        causes.append(f"{shutil.disk_usage(os.fspath(folder)).free / 2**20:.0f} MiB free on its disk")
    except OSError:
        pass
    return "; ".join([f"torch.save failed: {first_line(error)}", *causes])
