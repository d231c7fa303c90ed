"""The synthesiser's phone inventory: acoustic segments (formant targets, voicing, frication,
durations) and phones as sequences of segments, with per-segment lookup tables.

Shapes: ``S`` segments; the tables are ``[S, 3]`` (F1-F3) and ``[S]``, indexed by segment id.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One acoustic segment of a phone (a stop has closure, release and aspiration segments)."""

    formants: Tuple[float, float, float]  #: F1-F3 targets (Hz) for a reference vocal tract
    voicing: float  #: glottal source amplitude
    frication: float  #: noise source amplitude
    noise_centre: float  #: centre of the frication spectrum (Hz)
    noise_width: float  #: half-width of the frication spectrum (Hz)
    milliseconds: Tuple[float, float]  #: duration range at the normal speaking rate


def _vowel(f1: float, f2: float, f3: float) -> Segment:
    return Segment((f1, f2, f3), 1.0, 0.0, 0.0, 1.0, (70.0, 170.0))


def _sonorant(f1: float, f2: float, f3: float, voicing: float) -> Segment:
    return Segment((f1, f2, f3), voicing, 0.0, 0.0, 1.0, (40.0, 80.0))


def _fricative(centre: float, width: float, frication: float, voicing: float) -> Segment:
    milliseconds = (50.0, 100.0) if voicing else (70.0, 130.0)
    return Segment((400.0, 1600.0, 2600.0), voicing, frication, centre, width, milliseconds)


SEGMENTS: Dict[str, Segment] = {
    "sil": Segment((500.0, 1500.0, 2500.0), 0.0, 0.0, 0.0, 1.0, (120.0, 400.0)),
    # Vowels (Peterson & Barney adult male means).
    "iy": _vowel(270, 2290, 3010),
    "ih": _vowel(390, 1990, 2550),
    "eh": _vowel(530, 1840, 2480),
    "ae": _vowel(660, 1720, 2410),
    "aa": _vowel(730, 1090, 2440),
    "ao": _vowel(570, 840, 2410),
    "uh": _vowel(440, 1020, 2240),
    "uw": _vowel(300, 870, 2240),
    "ah": _vowel(640, 1190, 2390),
    "er": _vowel(490, 1350, 1690),
    # Nasals and approximants.
    "m": _sonorant(280, 1000, 2200, 0.3),
    "n": _sonorant(280, 1600, 2600, 0.3),
    "l": _sonorant(360, 1300, 2700, 0.6),
    "r": _sonorant(420, 1300, 1600, 0.6),
    "w": _sonorant(300, 700, 2200, 0.6),
    "y": _sonorant(280, 2200, 2900, 0.6),
    # Fricatives.
    "s": _fricative(5500, 1200, 0.25, 0.0),
    "sh": _fricative(3000, 900, 0.25, 0.0),
    "f": _fricative(6000, 3500, 0.06, 0.0),
    "th": _fricative(5000, 3000, 0.05, 0.0),
    "h": _fricative(1600, 2000, 0.075, 0.0),
    "z": _fricative(5500, 1200, 0.175, 0.25),
    "v": _fricative(6000, 3500, 0.05, 0.35),
    "zh": _fricative(3000, 900, 0.175, 0.25),
    # Stop segments: closures at the place's formant loci, releases, aspiration.
    "lab_cl": Segment((300, 900, 2200), 0.0, 0.0, 0.0, 1.0, (40.0, 80.0)),
    "alv_cl": Segment((300, 1700, 2700), 0.0, 0.0, 0.0, 1.0, (40.0, 80.0)),
    "vel_cl": Segment((300, 2000, 2400), 0.0, 0.0, 0.0, 1.0, (40.0, 80.0)),
    "lab_vcl": Segment((250, 900, 2200), 0.05, 0.0, 0.0, 1.0, (40.0, 70.0)),
    "alv_vcl": Segment((250, 1700, 2700), 0.05, 0.0, 0.0, 1.0, (40.0, 70.0)),
    "vel_vcl": Segment((250, 2000, 2400), 0.05, 0.0, 0.0, 1.0, (40.0, 70.0)),
    "lab_rel": Segment((300, 900, 2200), 0.0, 0.3, 900, 1500, (8.0, 15.0)),
    "alv_rel": Segment((300, 1700, 2700), 0.0, 0.3, 4500, 2000, (8.0, 15.0)),
    "vel_rel": Segment((300, 2000, 2400), 0.0, 0.3, 2200, 800, (10.0, 20.0)),
    "asp": Segment((500, 1500, 2500), 0.0, 0.075, 1600, 2500, (25.0, 50.0)),
}
SEGMENT_NAMES = tuple(SEGMENTS)
SEGMENT_ID = {name: index for index, name in enumerate(SEGMENT_NAMES)}
SILENCE = SEGMENT_ID["sil"]

#: Phones as sequences of segments.
PHONES: Dict[str, Tuple[str, ...]] = {
    **{name: (name,) for name in ("m", "n", "l", "r", "w", "y")},
    **{name: (name,) for name in ("s", "sh", "f", "th", "h", "z", "v", "zh")},
    "p": ("lab_cl", "lab_rel", "asp"),
    "t": ("alv_cl", "alv_rel", "asp"),
    "k": ("vel_cl", "vel_rel", "asp"),
    "b": ("lab_vcl", "lab_rel"),
    "d": ("alv_vcl", "alv_rel"),
    "g": ("vel_vcl", "vel_rel"),
}
VOWELS = ("iy", "ih", "eh", "ae", "aa", "ao", "uh", "uw", "ah", "er")
CONSONANTS = tuple(PHONES)

# Per-segment tables indexed by segment id: [S, 3] formants, then [S] each.
FORMANTS, VOICING, FRICATION, NOISE_CENTRE, NOISE_WIDTH = (
    np.array([getattr(SEGMENTS[name], field) for name in SEGMENT_NAMES])
    for field in ("formants", "voicing", "frication", "noise_centre", "noise_width")
)
FORMANT_HALF_BANDWIDTHS = np.array([30.0, 45.0, 60.0, 90.0, 125.0])  # B/2 of F1-F5 (Hz)
