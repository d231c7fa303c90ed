"""Who speaks and how: stable per-speaker voice traits, and the prosody each emotion imposes.

Every random draw comes from a stream keyed by ``(seed, stream id, speaker[, utterance, part])``
(:func:`random_stream`), so a speaker's voice and an utterance's content do not depend on the
order or number of worker processes generating them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from speechbrain_dino.synthetic.phones import SEGMENT_NAMES


@dataclass(frozen=True)
class Speaker:
    """Stable voice traits of one speaker."""

    f0_hz: float  #: median fundamental frequency
    f0_range: float  #: standard deviation of intonation, semitones
    jitter: float  #: pulse position perturbation, fraction of a period
    shimmer: float  #: pulse amplitude perturbation (log-normal sigma)
    breathiness: float  #: aspiration noise relative to the pulse train
    tilt_db: float  #: source spectral slope, dB per octave
    formant_scale: float  #: vocal-tract length factor on every formant
    high_formants: Tuple[float, float]  #: F4, F5 (Hz)
    bandwidth_scale: float  #: factor on the formant bandwidths
    rate: float  #: speaking rate factor
    vowel_space: np.ndarray  #: [segments, 3] personal factors on F1-F3 targets


@dataclass(frozen=True)
class Prosody:
    """How an emotion shifts a speaker's delivery."""

    f0_shift: float  #: semitones added to the f0 contour
    f0_range: float  #: factor on the speaker's intonation range
    rate: float  #: factor on the speaking rate
    level_db: float  #: loudness offset
    tilt_db: float  #: added source slope (positive: brighter, more vocal effort)
    breathiness: float  #: added aspiration


EMOTIONS: Dict[str, Prosody] = {
    "neutral": Prosody(0.0, 1.0, 1.0, 0.0, 0.0, 0.0),
    "angry": Prosody(2.5, 1.3, 1.12, 4.0, 1.5, 0.0),
    "sad": Prosody(-2.0, 0.6, 0.85, -3.0, -1.0, 0.05),
    "happy": Prosody(2.0, 1.4, 1.08, 2.0, 0.8, 0.0),
    "fearful": Prosody(3.0, 0.8, 1.15, -1.0, 0.0, 0.075),
    "surprised": Prosody(2.5, 1.6, 0.95, 1.5, 0.5, 0.0),
}
EMOTION_NAMES = tuple(EMOTIONS)


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for ``key`` (e.g. a stream id, speaker and utterance)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


SPEAKER_STREAM, UTTERANCE_STREAM, LENGTH_STREAM = 0, 1, 2


def speaker_traits(seed: int, speaker: int) -> Speaker:
    """The traits of speaker number ``speaker`` of the corpus made with ``seed``."""
    rng = random_stream(seed, SPEAKER_STREAM, speaker)
    low_voice = rng.random() < 0.5
    f0_low, f0_high = (85.0, 150.0) if low_voice else (165.0, 260.0)
    f0_hz = np.exp(rng.uniform(np.log(f0_low), np.log(f0_high)))
    formant_scale = rng.uniform(0.88, 1.02) if low_voice else rng.uniform(1.04, 1.2)
    return Speaker(
        f0_hz=float(f0_hz),
        f0_range=float(rng.uniform(1.0, 3.0)),
        jitter=float(rng.uniform(0.003, 0.015)),
        shimmer=float(rng.uniform(0.03, 0.12)),
        breathiness=float(rng.uniform(0.015, 0.15)),
        tilt_db=float(rng.uniform(-10.0, -2.0)),
        formant_scale=float(formant_scale),
        high_formants=(float(rng.uniform(3200, 4000)), float(rng.uniform(4300, 5000))),
        bandwidth_scale=float(rng.uniform(0.8, 1.4)),
        rate=float(rng.uniform(0.85, 1.2)),
        vowel_space=np.exp(rng.normal(0.0, 0.08, size=(len(SEGMENT_NAMES), 3))),
    )
