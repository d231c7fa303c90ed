"""Peak resident memory of a process's own address space, for stage and benchmark reports.

``ru_maxrss`` is not that on Linux: a process created by fork (or vfork) + exec starts its
high-water mark from its parent's, so every child of a 2.6 GB parent reports at least 2.6 GB.
``VmHWM`` in ``/proc/<pid>/status`` belongs to the process's current address space and starts
afresh at exec. :class:`PeakMemoryMonitor` samples it for a child while the child runs (the
file disappears when the child exits).
"""
from __future__ import annotations

import resource
import threading
from typing import Optional, Union

#: Seconds between two reads of a monitored child's high-water mark.
SAMPLE_SECONDS = 0.2


def peak_rss_gb(pid: Union[int, str] = "self") -> Optional[float]:
    """``VmHWM`` of process ``pid`` in GB, or None where ``/proc`` does not give it.

    Arguments
    ---------
    pid : int or "self"

    Returns
    -------
    float or None (not Linux, process gone, or a zombie without an address space)
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_peak_rss_gb() -> float:
    """This process's own peak (``VmHWM``), falling back to ``ru_maxrss`` off Linux (GB)."""
    peak = peak_rss_gb("self")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class PeakMemoryMonitor:
    """Samples a child's ``VmHWM`` every :data:`SAMPLE_SECONDS` in a daemon thread.

    Use as a context manager around waiting for the child; :attr:`peak_gb` is then the largest
    high-water mark read (None if none could be read, e.g. off Linux). Growth in the child's last
    ``SAMPLE_SECONDS`` before it exits can be missed.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_gb: Optional[float] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            reading = peak_rss_gb(self.pid)
            if reading is not None:
                self.peak_gb = max(reading, self.peak_gb or 0.0)
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def __enter__(self) -> "PeakMemoryMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
