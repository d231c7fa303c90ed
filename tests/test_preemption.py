"""The preemption watch: SIGTERM and SIGUSR1 become a flag while it runs, keep their usual handling
outside it, and can be passed on to a child (the recipes' behaviour: test_fault_injection.py)."""
import os
import signal
import subprocess
import sys

import pytest

from speechbrain_dino.training.preemption import PreemptionWatch


@pytest.fixture
def usr1_seen():
    """SIGUSR1 handled by recording it (its handling outside the watch); the signals seen."""
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGUSR1, previous)


def test_the_watch_records_the_signals_and_restores_their_handlers(usr1_seen):
    with PreemptionWatch() as watch:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.received == signal.SIGTERM and usr1_seen == []
    os.kill(os.getpid(), signal.SIGUSR1)  # the handler from before the watch again
    assert usr1_seen == [signal.SIGUSR1]


def test_a_signal_not_stopped_for_is_delivered_again_after_the_watch(usr1_seen):
    with PreemptionWatch() as watch:
        os.kill(os.getpid(), signal.SIGUSR1)
    watch.deliver_pending()
    assert usr1_seen == [signal.SIGUSR1]
    with PreemptionWatch() as stopped:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stopped.agreed()  # the run stopped for it: not delivered again
    stopped.deliver_pending()
    assert usr1_seen == [signal.SIGUSR1]


def test_the_watch_passes_a_signal_on_to_a_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with PreemptionWatch(forward_to=child.pid):
        os.kill(os.getpid(), signal.SIGTERM)
        assert child.wait(timeout=30) == -signal.SIGTERM
