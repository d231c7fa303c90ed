"""MSP-Podcast: ``Audios/<FileName>`` labelled by ``Labels/labels_consensus.csv``.

The labels CSV (columns ``FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set``)
drives the preparation: one manifest row per labelled file whose audio exists (a missing one is
``missing_audio``). ``EmoClass`` letters are written as names shared with the other corpora: A
angry, S sad, H happy, U surprised, F fearful, D disgust, C contempt, N neutral, O other, X
no_agreement. By default the 8 primary emotions are kept (all but O and X), as in the MSP-Podcast
categorical task. ``split`` is ``Split_Set`` as given (Train, Development, Test1, Test2, ...),
optionally restricted by ``splits``. ``SpkrID`` "Unknown" becomes an empty ``spk_id``. The ID is
``FileName`` without extension.
"""

from __future__ import annotations

import argparse
import csv
import os
from typing import Dict, List, Optional, Sequence

from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.prepare.common import (
    ScanReport,
    Skip,
    Utterance,
    add_emotions_argument,
    check_emotions,
    kept_emotion,
    label_files,
    run_preparation,
    split_name,
)

EMOTIONS = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprised",
    "F": "fearful",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": "no_agreement",
}
DEFAULT_EMOTIONS = tuple(name for code, name in EMOTIONS.items() if code not in "OX")
LABEL_COLUMNS = ("FileName", "EmoClass", "SpkrID", "Split_Set")
UNKNOWN_SPEAKER = "unknown"


def prepare_msp_podcast(
    data_folder: PathLike,
    save_csv: PathLike,
    emotions: Sequence[str] = DEFAULT_EMOTIONS,
    splits: Optional[Sequence[str]] = None,
    labels_csv: str = os.path.join("Labels", "labels_consensus.csv"),
    audio_folder: str = "Audios",
    sample_rate: int = 16000,
    resample: bool = False,
    min_duration: float = 0.0,
    skip_invalid: bool = True,
) -> Dict[str, object]:
    """Writes a manifest ``ID,duration,wav,spk_id,emotion,split`` of MSP-Podcast.

    Arguments
    ---------
    data_folder : PathLike
        The release root.
    save_csv : PathLike
        The manifest to write.
    emotions : sequence of str
        Emotion names to keep; other rows are ``label_not_kept``.
    splits : sequence of str, optional
        ``Split_Set`` values to keep (default all); other rows are ``split_not_kept``.
    labels_csv, audio_folder : str
        The labels file and the audio folder, relative to ``data_folder``.
    sample_rate, resample, min_duration, skip_invalid
        See :mod:`speechbrain_dino.prepare.common`.

    Returns
    -------
    dict
        The report of :func:`~speechbrain_dino.prepare.common.run_preparation`.

    Raises
    ------
    DataError
        A missing labels file or column, or a bad row (naming file and line).
    """
    keep = check_emotions(emotions, tuple(EMOTIONS.values()))

    def scan(folder: str, scan_report: ScanReport) -> List[Utterance]:
        rows = _read_labels(os.path.join(folder, labels_csv))
        audio_root = os.path.join(folder, audio_folder)

        def label(path: str) -> Utterance:
            return _utterance(path, rows[os.path.basename(path)], keep, splits)

        return label_files([os.path.join(audio_root, name) for name in rows], label, scan_report)

    options = {
        "emotions": list(keep),
        "splits": splits and list(splits),
        "labels_csv": labels_csv,
        "audio_folder": audio_folder,
    }
    return run_preparation(
        "msp_podcast",
        data_folder,
        save_csv,
        scan,
        options,
        sample_rate,
        resample,
        min_duration,
        skip_invalid,
    )


def _read_labels(path: str) -> Dict[str, Dict[str, str]]:
    """``{FileName: row}`` of the labels CSV in file order, values stripped, rows checked.

    Raises
    ------
    DataError
        Missing file or column, empty ``FileName``, unknown ``EmoClass``, repeated ``FileName``.
    """
    if not os.path.isfile(path):
        raise DataError("MSP-Podcast labels file not found (see labels_csv / --labels_csv)", path)
    rows: Dict[str, Dict[str, str]] = {}
    line_of: Dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin)
        missing = [name for name in LABEL_COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"missing column(s) {missing}; header is {reader.fieldnames}", path, 1)
        for row in reader:
            row = {name: (row[name] or "").strip() for name in LABEL_COLUMNS}
            name = row["FileName"]
            if row["EmoClass"] not in EMOTIONS or not name or os.path.basename(name) != name:
                raise DataError(
                    f"FileName {name!r}, EmoClass {row['EmoClass']!r}: expected a file name and "
                    f"one of {' '.join(EMOTIONS)}",
                    path,
                    reader.line_num,
                )
            if name in rows:
                raise DataError(
                    f"FileName {name!r} repeats line {line_of[name]}", path, reader.line_num
                )
            rows[name], line_of[name] = row, reader.line_num
    return rows


def _utterance(
    path: str, row: Dict[str, str], keep: Sequence[str], splits: Optional[Sequence[str]]
) -> Utterance:
    """The manifest utterance of one labels row, or Skip."""
    emotion = kept_emotion(EMOTIONS[row["EmoClass"]], keep)
    if splits is not None and row["Split_Set"] not in splits:
        raise Skip("split_not_kept", f"Split_Set {row['Split_Set']!r} is not among {list(splits)}")
    if not os.path.isfile(path):
        raise Skip("missing_audio", "audio file of a labelled row not found")
    speaker = "" if row["SpkrID"].lower() == UNKNOWN_SPEAKER else row["SpkrID"]
    labels = {"spk_id": speaker, "emotion": emotion, "split": row["Split_Set"]}
    return Utterance(split_name(path)[0], path, labels)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`prepare_msp_podcast` for the command line."""
    add_emotions_argument(parser, tuple(EMOTIONS.values()), DEFAULT_EMOTIONS)
    parser.add_argument(
        "--splits",
        nargs="+",
        default=argparse.SUPPRESS,
        metavar="SPLIT",
        help="Split_Set values to keep (default all)",
    )
    parser.add_argument(
        "--labels_csv",
        default=argparse.SUPPRESS,
        help="labels file relative to data_folder (default Labels/labels_consensus.csv)",
    )
    parser.add_argument(
        "--audio_folder",
        default=argparse.SUPPRESS,
        help="audio folder relative to data_folder (default Audios)",
    )
