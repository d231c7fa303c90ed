"""Permissions of files written through a temporary name: what a plain ``open`` would give.

``tempfile.mkstemp`` and ``mkdtemp`` create private entries (0600 / 0700) whatever the umask, so a
manifest or a ``pretrained/`` folder renamed into place from one would be unreadable by other
users. :func:`shareable` gives the usual mode instead: 0644 for files, 0755 for folders, less what
the process's umask removes.
"""
from __future__ import annotations

import os


def current_umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shareable(mode: int) -> int:
    """``mode`` (0o644 for a file, 0o755 for a folder) less the umask's bits."""
    return mode & ~current_umask()
