"""Peak memory of a child process is its own, not its parent's (the ru_maxrss pitfall)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from speechbrain_dino.pipeline.memory import PeakMemoryMonitor, peak_rss_gb

GB = 2**30


@pytest.mark.skipif(peak_rss_gb() is None, reason="needs /proc (Linux)")
def test_child_peak_is_its_own_not_the_parents():
    ballast = np.ones(int(0.6 * GB / 8))  # the parent holds 0.6 GB while the child runs
    child = "import numpy as np, time; a = np.ones(int(0.25 * 2**30 / 8)); time.sleep(0.8)"
    process = subprocess.Popen([sys.executable, "-c", child])
    with PeakMemoryMonitor(process.pid) as memory:
        os.wait4(process.pid, 0)
    assert ballast.nbytes >= 0.6 * GB - 8
    assert 0.25 <= memory.peak_gb < 0.5  # ru_maxrss would say >= 0.6 here on Linux
