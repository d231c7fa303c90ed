"""CREMA-D: ``AudioWAV/AAAA_SSS_EMO_LVL.wav`` → ``spk_id`` AAAA (actor 1001-1091), an emotion name.

Emotion codes are written as the names RAVDESS uses, so labels agree across corpora: ANG angry, DIS
disgust, FEA fearful, HAP happy, NEU neutral, SAD sad. ``data_folder`` is the CREMA-D root (its
``AudioWAV`` folder is scanned, never ``AudioMP3``, which holds the same clips) or ``AudioWAV``
itself. The ID is the file name without extension, e.g. ``1001_DFA_ANG_XX``.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Dict, List, Sequence

from speechbrain_dino.errors import PathLike
from speechbrain_dino.prepare.common import (
    ScanReport,
    Skip,
    Utterance,
    add_emotions_argument,
    check_emotions,
    find_audio,
    kept_emotion,
    label_files,
    run_preparation,
    split_name,
)

EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
NAME_PATTERN = re.compile(r"^(?P<actor>\d{4})_[A-Z]{3}_(?P<emotion>[A-Z]{3})_(LO|MD|HI|XX)$")
EXPECTED_NAME = "AAAA_SSS_EMO_LVL with EMO in " + " ".join(EMOTIONS) + " and LVL in LO MD HI XX"


def prepare_cremad(
    data_folder: PathLike,
    save_csv: PathLike,
    emotions: Sequence[str] = tuple(EMOTIONS.values()),
    sample_rate: int = 16000,
    resample: bool = False,
    min_duration: float = 0.0,
    skip_invalid: bool = True,
) -> Dict[str, object]:
    """Writes a manifest ``ID,duration,wav,spk_id,emotion`` of CREMA-D.

    Arguments
    ---------
    data_folder : PathLike
        The CREMA-D root (holding ``AudioWAV``) or the ``AudioWAV`` folder.
    save_csv : PathLike
        The manifest to write.
    emotions : sequence of str
        Emotion names to keep (default all 6); others are counted as ``label_not_kept``.
    sample_rate, resample, min_duration, skip_invalid
        See :mod:`speechbrain_dino.prepare.common`. The original clips are 16 kHz.

    Returns
    -------
    dict
        The report of :func:`~speechbrain_dino.prepare.common.run_preparation`.
    """
    keep = check_emotions(emotions, tuple(EMOTIONS.values()))

    def label(path: str) -> Utterance:
        stem, _ = split_name(path)
        match = NAME_PATTERN.match(stem)
        if match is None or match["emotion"] not in EMOTIONS:
            raise Skip("unexpected_name", f"expected {EXPECTED_NAME}")
        emotion = kept_emotion(EMOTIONS[match["emotion"]], keep)
        return Utterance(stem, path, {"spk_id": match["actor"], "emotion": emotion})

    def scan(folder: str, scan_report: ScanReport) -> List[Utterance]:
        audio_folder = os.path.join(folder, "AudioWAV")
        paths = find_audio(audio_folder if os.path.isdir(audio_folder) else folder)
        return label_files(paths, label, scan_report)

    return run_preparation(
        "cremad",
        data_folder,
        save_csv,
        scan,
        {"emotions": list(keep)},
        sample_rate,
        resample,
        min_duration,
        skip_invalid,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`prepare_cremad` for the command line."""
    add_emotions_argument(parser, tuple(EMOTIONS.values()), tuple(EMOTIONS.values()))
