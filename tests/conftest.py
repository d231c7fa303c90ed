"""Shared fixtures: small generated audio only (the tests never read the benchmark corpora)."""
from __future__ import annotations

import contextlib
import os
import resource

import numpy as np
import pytest
import soundfile as sf

SAMPLE_RATE = 16000


def write_tone(path: str, seconds: float = 1.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> str:
    """Writes a noisy tone (a stand-in for speech where content does not matter); returns path."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = 0.3 * np.sin(2 * np.pi * (150 + 50 * rng.random()) * time)
    signal += 0.01 * rng.standard_normal(time.shape)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sf.write(path, signal.astype(np.float32), sample_rate)
    return path


def run_cli(main, capsys, *argv) -> tuple:
    """Runs a command-line ``main(argv)`` in-process; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(arg) for arg in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Files written in the block cannot grow past ``nbytes`` (RLIMIT_FSIZE: the kernel refuses
    the write with EFBIG, as a full disk refuses it with ENOSPC; Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture
def tone_writer():
    """The :func:`write_tone` helper as a fixture."""
    return write_tone
