"""Any tree of audio files: ID from the relative path, speaker from the folder, a regex, or none.

The ID is the path relative to ``data_folder`` without its extension, ``/`` replaced by ``--``
(``spk1/sess/a.wav`` → ``spk1--sess--a``); two files differing only in extension clash (a
:class:`DataError`). Speakers:

- ``speaker="parent"`` (default): the name of the file's folder; a file directly in ``data_folder``
  has none and is an ``unexpected_name``.
- ``speaker_regex``: a regular expression with a named group ``spk``, searched in the relative path
  (``/`` separators); a path it does not match is an ``unexpected_name``.
- ``speaker="none"``: unlabelled, ``spk_id`` empty.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Callable, Dict, List, Optional

from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.prepare.common import (
    ScanReport,
    Skip,
    Utterance,
    find_audio,
    label_files,
    run_preparation,
)

SPEAKER_SOURCES = ("parent", "none")


def prepare_folder(
    data_folder: PathLike,
    save_csv: PathLike,
    speaker: str = "parent",
    speaker_regex: Optional[str] = None,
    sample_rate: int = 16000,
    resample: bool = False,
    min_duration: float = 0.5,
    skip_invalid: bool = True,
) -> Dict[str, object]:
    """Writes a manifest ``ID,duration,wav,spk_id`` of every audio file under ``data_folder``.

    Arguments
    ---------
    data_folder : PathLike
        The root of the tree.
    save_csv : PathLike
        The manifest to write.
    speaker : str
        ``"parent"`` or ``"none"`` (ignored when ``speaker_regex`` is given).
    speaker_regex : str, optional
        A regular expression with a named group ``spk``, searched in each relative path.
    sample_rate, resample, min_duration, skip_invalid
        See :mod:`speechbrain_dino.prepare.common`.

    Returns
    -------
    dict
        The report of :func:`~speechbrain_dino.prepare.common.run_preparation`.

    Raises
    ------
    DataError
        An unknown ``speaker`` or a ``speaker_regex`` that does not compile or has no ``spk`` group,
        besides those of ``run_preparation``.
    """
    speaker_of = _speaker_rule(speaker, speaker_regex)

    def scan(folder: str, scan_report: ScanReport) -> List[Utterance]:
        def label(path: str) -> Utterance:
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            return Utterance(relative_id(relative), path, {"spk_id": speaker_of(relative)})

        return label_files(find_audio(folder), label, scan_report)

    options = {"speaker": "regex" if speaker_regex else speaker, "speaker_regex": speaker_regex}
    return run_preparation(
        "folder",
        data_folder,
        save_csv,
        scan,
        options,
        sample_rate,
        resample,
        min_duration,
        skip_invalid,
    )


def relative_id(relative: str) -> str:
    """The utterance ID of a path relative to the tree (``/`` separated): ``spk1/a.wav`` → ``spk1--a``."""
    return os.path.splitext(relative)[0].replace("/", "--")


def _speaker_rule(speaker: str, speaker_regex: Optional[str]) -> Callable[[str], str]:
    """The function from a relative path (``/`` separated) to its ``spk_id``, or Skip."""
    if speaker_regex:
        try:
            pattern = re.compile(speaker_regex)
        except re.error as error:
            raise DataError(f"speaker_regex {speaker_regex!r} does not compile: {error}") from None
        if "spk" not in pattern.groupindex:
            raise DataError(f"speaker_regex {speaker_regex!r} needs a named group (?P<spk>...)")

        def from_regex(relative: str) -> str:
            match = pattern.search(relative)
            if match is None or not match["spk"]:
                raise Skip("unexpected_name", f"speaker_regex {speaker_regex!r} does not match")
            return match["spk"]

        return from_regex
    if speaker == "none":
        return lambda relative: ""
    if speaker != "parent":
        raise DataError(
            f"speaker {speaker!r}: choose among {list(SPEAKER_SOURCES)} or give speaker_regex"
        )

    def from_parent(relative: str) -> str:
        if "/" not in relative:
            raise Skip("unexpected_name", "no speaker folder (the file is at the top level)")
        return relative.split("/")[-2]

    return from_parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`prepare_folder` for the command line."""
    parser.add_argument(
        "--speaker",
        choices=SPEAKER_SOURCES,
        default=argparse.SUPPRESS,
        help="speaker from the parent folder (default) or none (unlabelled)",
    )
    parser.add_argument(
        "--speaker_regex",
        default=argparse.SUPPRESS,
        metavar="REGEX",
        help="speaker from a regex with a named group spk, searched in the "
        "relative path, e.g. '^(?P<spk>[0-9]+)-'",
    )
