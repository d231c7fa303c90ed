"""IEMOCAP: ``SessionN/sentences/wav/<dialog>/<utt>.wav`` with labels from ``EmoEvaluation``.

Each ``EmoEvaluation/*.txt`` has one line per utterance,
``[start - end]<TAB>utt<TAB>code<TAB>[v, a, d]``. Codes are written as names shared with the other
corpora: neu neutral, hap happy, exc excited (merged into happy by default, the usual 4-class
protocol), ang angry, sad sad, fru frustrated, sur surprised, fea fearful, dis disgust, oth other,
xxx no_agreement. Only ``emotions`` (default neutral happy angry sad) are kept; the rest are counted
as ``label_not_kept``.

``spk_id`` is the session plus the gender of the utterance's speaker, the letter before the
utterance number: ``Ses01F_impro01_M003`` is spoken by ``Ses01M``. Its first five characters are
the session, from which the emotion evaluation builds leave-one-session-out folds.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from typing import Dict, List, Sequence

from speechbrain_dino.errors import DataError, PathLike
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
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "ang": "angry",
    "sad": "sad",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgust",
    "oth": "other",
    "xxx": "no_agreement",
}
DEFAULT_EMOTIONS = ("neutral", "happy", "angry", "sad")
UTTERANCE_PATTERN = re.compile(r"^(?P<session>Ses\d\d)[FM]_\S+_(?P<gender>[FM])\d{3}$")
LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(?P<utt>\S+)\t(?P<code>\w+)\t\[")


def prepare_iemocap(
    data_folder: PathLike,
    save_csv: PathLike,
    emotions: Sequence[str] = DEFAULT_EMOTIONS,
    merge_excited: bool = True,
    sample_rate: int = 16000,
    resample: bool = False,
    min_duration: float = 0.0,
    skip_invalid: bool = True,
) -> Dict[str, object]:
    """Writes a manifest ``ID,duration,wav,spk_id,emotion`` of IEMOCAP's labelled sentences.

    Arguments
    ---------
    data_folder : PathLike
        The release root holding ``Session1`` ... ``Session5``.
    save_csv : PathLike
        The manifest to write.
    emotions : sequence of str
        Emotion names to keep.
    merge_excited : bool
        Label ``exc`` as happy (else as excited).
    sample_rate, resample, min_duration, skip_invalid
        See :mod:`speechbrain_dino.prepare.common`. A wav with no label line is ``no_label``.

    Returns
    -------
    dict
        The report of :func:`~speechbrain_dino.prepare.common.run_preparation`.

    Raises
    ------
    DataError
        No ``SessionN`` folders, or a label line that does not parse (naming file and line).
    """
    keep = check_emotions(emotions, tuple(EMOTIONS.values()))

    def scan(folder: str, scan_report: ScanReport) -> List[Utterance]:
        sessions = sorted(glob.glob(os.path.join(folder, "Session[0-9]")))
        if not sessions:
            raise DataError(
                "no Session1 ... Session5 folders (expected the IEMOCAP release root)", folder
            )
        codes = read_emotion_codes(sessions)

        def label(path: str) -> Utterance:
            utt_id, _ = split_name(path)
            match = UTTERANCE_PATTERN.match(utt_id)
            if match is None:
                raise Skip("unexpected_name", "expected SesNNG_<dialog>_GNNN")
            if utt_id not in codes:
                raise Skip("no_label", "no line for this utterance in dialog/EmoEvaluation/*.txt")
            code = "hap" if merge_excited and codes[utt_id] == "exc" else codes[utt_id]
            emotion = kept_emotion(EMOTIONS[code], keep)
            return Utterance(
                utt_id, path, {"spk_id": match["session"] + match["gender"], "emotion": emotion}
            )

        paths = [
            path
            for session in sessions
            for path in find_audio(os.path.join(session, "sentences", "wav"))
        ]
        return label_files(paths, label, scan_report)

    return run_preparation(
        "iemocap",
        data_folder,
        save_csv,
        scan,
        {"emotions": list(keep), "merge_excited": merge_excited},
        sample_rate,
        resample,
        min_duration,
        skip_invalid,
    )


def read_emotion_codes(sessions: Sequence[str]) -> Dict[str, str]:
    """``{utterance: code}`` from every ``<session>/dialog/EmoEvaluation/*.txt``.

    Raises
    ------
    DataError
        A line that starts like a label (``[``) but does not parse, or an unknown code.
    """
    codes: Dict[str, str] = {}
    for session in sessions:
        for path in sorted(glob.glob(os.path.join(session, "dialog", "EmoEvaluation", "*.txt"))):
            with open(path, encoding="utf-8", errors="replace") as fin:
                for number, line in enumerate(fin, start=1):
                    if not line.startswith("["):
                        continue
                    match = LABEL_LINE.match(line)
                    if match is None or match["code"] not in EMOTIONS:
                        raise DataError(
                            "expected '[start - end]<TAB>utterance<TAB>code<TAB>[v, a, d]' with "
                            f"code in {' '.join(EMOTIONS)}",
                            path,
                            number,
                        )
                    codes[match["utt"]] = match["code"]
    return codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`prepare_iemocap` for the command line."""
    add_emotions_argument(parser, tuple(EMOTIONS.values()), DEFAULT_EMOTIONS)
    parser.add_argument(
        "--keep_excited",
        dest="merge_excited",
        action="store_false",
        default=argparse.SUPPRESS,
        help="label exc as excited instead of happy",
    )
