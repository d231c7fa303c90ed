"""Preemption: SIGTERM or SIGUSR1 during training stops the run after the current step, checkpointed.

Batch schedulers warn a job before they kill it: SLURM sends SIGTERM when it preempts or cancels
a job (or a chosen signal some time before the time limit, ``--signal``), Kubernetes sends SIGTERM
and waits its grace period. While a Brain's ``fit`` runs, :class:`PreemptionWatch` turns
:data:`PREEMPTION_SIGNALS` into a flag (a signal handler must do no more). The Brain looks at it
after each optimiser step (:meth:`PreemptionWatch.agreed`: under DDP the ranks all-reduce it, as
the signal may reach one process only, so they all stop after the same step), saves an
intra-epoch checkpoint and raises :class:`~speechbrain_dino.errors.Preempted`; the recipe prints
one line and exits with :data:`~speechbrain_dino.errors.PREEMPTED_EXIT_STATUS`. Rerun, it resumes
from that checkpoint to the weights of an uninterrupted run.

Outside ``fit`` the signals keep their usual handling (by default they end the process), and a
signal that reached ``fit`` after its last look (:meth:`PreemptionWatch.deliver_pending`) is
delivered again once ``fit`` returns. The pipeline watches the same signals while a stage runs and
passes them on to the stage's process (``forward_to``).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Dict, Optional

from speechbrain_dino.training.rank_agreement import any_rank

#: The signals that ask a run to stop (SLURM's ``--signal`` and Kubernetes' default send these).
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionWatch:
    """A context manager that records :data:`PREEMPTION_SIGNALS` instead of dying of them.

    Arguments
    ---------
    forward_to : int, optional
        A process id to pass each signal on to (a pipeline's running stage).
    """

    def __init__(self, forward_to: Optional[int] = None) -> None:
        self.forward_to = forward_to
        #: The last preemption signal this process received while watching (None: none).
        self.received: Optional[signal.Signals] = None
        #: Whether :meth:`agreed` found a signal on some rank (the run is stopping).
        self.stopping = False
        self._previous: Dict[signal.Signals, object] = {}

    def __enter__(self) -> "PreemptionWatch":
        self.received, self.stopping = None, False
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            for signum in PREEMPTION_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _record(self, signum: int, frame) -> None:
        """The handler: records the signal (and passes it on)."""
        self.received = signal.Signals(signum)
        if self.forward_to is not None:
            with contextlib.suppress(ProcessLookupError):  # it has just ended
                os.kill(self.forward_to, signum)

    def agreed(self) -> bool:
        """Whether any rank received a signal; every rank must call it at the same point."""
        self.stopping = any_rank(self.received is not None)
        return self.stopping

    def deliver_pending(self) -> None:
        """Sends this process again a signal it received but did not stop for (call after the
        watch ended, so that the usual handling applies)."""
        if self.received is not None and not self.stopping:
            signal.raise_signal(self.received)
