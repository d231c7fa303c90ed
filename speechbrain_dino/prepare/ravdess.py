"""RAVDESS speech: ``Actor_AA/MM-VV-EE-II-SS-RR-AA.<ext>`` → ``spk_id`` AA, an emotion name.

Name fields: modality MM (03 audio-only), vocal channel VV (01 speech, 02 song), emotion EE (01
neutral ... 08 surprised), intensity II, statement SS, repetition RR, actor AA. Only audio-only
speech (03-01) is kept; other files are counted as ``not_speech``. The ID is the file name without
its extension (unique across the corpus); any audio format soundfile reads is accepted (the original
wav, or a flac copy).
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

#: RAVDESS emotion codes (the ``EE`` field) and the names written to the manifest.
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
NAME_PATTERN = re.compile(
    r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>0[1-8])-\d\d-\d\d-\d\d-(?P<actor>\d\d)$"
)
EXPECTED_NAME = "Actor_AA/MM-VV-EE-II-SS-RR-AA with EE in 01..08"


def prepare_ravdess(
    data_folder: PathLike,
    save_csv: PathLike,
    emotions: Sequence[str] = tuple(EMOTIONS.values()),
    sample_rate: int = 16000,
    resample: bool = False,
    min_duration: float = 0.0,
    skip_invalid: bool = True,
) -> Dict[str, object]:
    """Writes a manifest ``ID,duration,wav,spk_id,emotion`` of the RAVDESS speech files.

    Arguments
    ---------
    data_folder : PathLike
        The folder holding ``Actor_01`` ... ``Actor_24``.
    save_csv : PathLike
        The manifest to write.
    emotions : sequence of str
        Emotion names to keep (default all 8); others are counted as ``label_not_kept``.
    sample_rate, resample, min_duration, skip_invalid
        See :mod:`speechbrain_dino.prepare.common`.

    Returns
    -------
    dict
        The report of :func:`~speechbrain_dino.prepare.common.run_preparation`.
    """
    keep = check_emotions(emotions, tuple(EMOTIONS.values()))

    def label(path: str) -> Utterance:
        stem, _ = split_name(path)
        match = NAME_PATTERN.match(stem)
        if match is None or os.path.basename(os.path.dirname(path)) != f"Actor_{match['actor']}":
            raise Skip("unexpected_name", f"expected {EXPECTED_NAME}")
        if (match["modality"], match["channel"]) != ("03", "01"):
            raise Skip("not_speech", "not an audio-only speech file (03-01-...)")
        emotion = kept_emotion(EMOTIONS[match["emotion"]], keep)
        return Utterance(stem, path, {"spk_id": match["actor"], "emotion": emotion})

    def scan(folder: str, scan_report: ScanReport) -> List[Utterance]:
        return label_files(find_audio(folder), label, scan_report)

    return run_preparation(
        "ravdess",
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
    """The options of :func:`prepare_ravdess` for the command line."""
    add_emotions_argument(parser, tuple(EMOTIONS.values()), tuple(EMOTIONS.values()))
