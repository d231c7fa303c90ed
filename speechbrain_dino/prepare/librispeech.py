"""LibriSpeech: ``SPK/CHAPTER/SPK-CHAPTER-UTT.flac`` (or ``SPK/SPK-CHAPTER-UTT.flac``, or a flat
folder of them) → ``spk_id`` SPK.

``data_folder`` is one subset (e.g. ``LibriSpeech/train-clean-100``) or any folder of such files;
transcripts and other non-audio files are ignored. The ID is the file name without extension. When
a file sits in a numeric folder, that folder must be its speaker's (``SPK/``) or its chapter's
inside its speaker's (``SPK/CHAPTER/``); a misplaced file is an ``unexpected_name``.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Dict, List

from speechbrain_dino.errors import PathLike
from speechbrain_dino.prepare.common import (
    ScanReport,
    Skip,
    Utterance,
    find_audio,
    label_files,
    run_preparation,
    split_name,
)

NAME_PATTERN = re.compile(r"^(?P<speaker>\d+)-(?P<chapter>\d+)-\d+$")


def prepare_librispeech(
    data_folder: PathLike,
    save_csv: PathLike,
    sample_rate: int = 16000,
    resample: bool = False,
    min_duration: float = 0.5,
    skip_invalid: bool = True,
) -> Dict[str, object]:
    """Writes a manifest ``ID,duration,wav,spk_id`` of a LibriSpeech subset.

    Arguments
    ---------
    data_folder : PathLike
        A LibriSpeech subset folder, nested ``SPK/CHAPTER/``, by speaker ``SPK/``, or flat.
    save_csv : PathLike
        The manifest to write.
    sample_rate, resample, min_duration, skip_invalid
        See :mod:`speechbrain_dino.prepare.common`.

    Returns
    -------
    dict
        The report of :func:`~speechbrain_dino.prepare.common.run_preparation`.
    """

    def scan(folder: str, scan_report: ScanReport) -> List[Utterance]:
        return label_files(find_audio(folder), _label, scan_report)

    return run_preparation(
        "librispeech",
        data_folder,
        save_csv,
        scan,
        {},
        sample_rate,
        resample,
        min_duration,
        skip_invalid,
    )


def _label(path: str) -> Utterance:
    """The utterance of ``.../SPK-CHAPTER-UTT.flac`` (Skip when the name or folders disagree)."""
    stem, _ = split_name(path)
    match = NAME_PATTERN.match(stem)
    if match is None:
        raise Skip("unexpected_name", "expected SPK-CHAPTER-UTT")
    folder = os.path.dirname(path)
    folders = (os.path.basename(os.path.dirname(folder)), os.path.basename(folder))
    in_place = folders == (match["speaker"], match["chapter"]) or folders[1] == match["speaker"]
    if folders[1].isdigit() and not in_place:
        raise Skip(
            "unexpected_name",
            f"file of {match['speaker']}/{match['chapter']} in {'/'.join(folders)}",
        )
    return Utterance(stem, path, {"spk_id": match["speaker"]})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """LibriSpeech has no options beyond the common ones."""
