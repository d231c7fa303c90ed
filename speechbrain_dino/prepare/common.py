"""What every corpus preparation shares: scanning, header checks, skip-when-prepared, reports.

A corpus module only knows its layout: it walks ``data_folder`` and turns each file it finds into an
:class:`Utterance` (ID and labels) or a skip with a reason, recorded in a :class:`ScanReport`.
:func:`run_preparation` does the rest, the same way for every corpus:

1. ``data_folder`` must exist (:class:`DataError` otherwise).
2. If ``save_csv`` exists and its sidecar ``save_csv + ".opts.json"`` holds the same options,
   nothing is redone (SpeechBrain's ``skip()`` idiom) and the stored report is returned with
   ``reused=True``. Like SpeechBrain, new or removed files under an unchanged ``data_folder`` are
   not detected: delete the manifest to force a new scan.
3. Utterance IDs must be unique: a clash is a :class:`DataError` naming both files.
4. Each file's header is read with :func:`~speechbrain_dino.data.audio.audio_info` (no decoding) for its
   duration and sample rate.
5. The manifest is written with :func:`~speechbrain_dino.data.manifest.write_manifest`, then the sidecar.

Skip reasons. *Invalid* files (``unreadable``, ``empty``, ``unexpected_name``, ``no_label``,
``missing_audio``) are counted and logged with their first few paths when ``skip_invalid`` is True,
and raise :class:`DataError` naming the file when it is False. *Filtered* rows (``too_short``,
``label_not_kept``, ``split_not_kept``, ``not_speech``, ``trial_speaker``) are always just counted;
``too_short`` is below ``min_duration`` or the encoders' shortest input
(:data:`~speechbrain_dino.data.short_clips.MIN_CLIP_SECONDS`).

Sample rates. A file whose rate differs from ``sample_rate`` is a :class:`DataError` unless
``resample=True``; then its row is kept (its duration is still exact, taken at its own rate), the
report counts it under ``resampled_files`` and a warning says to load with resampling
(``load_audio(..., resample=True)``, i.e. the data pipeline's ``resample: True``).

Hidden files and folders (names starting with ``.``, e.g. macOS ``._x.wav`` companions) are ignored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from speechbrain_dino.data.audio import AUDIO_EXTENSIONS, AudioInfo, audio_info
from speechbrain_dino.data.manifest import Row, summarize, write_manifest
from speechbrain_dino.data.short_clips import MIN_CLIP_SECONDS
from speechbrain_dino.errors import DataError, PathLike

logger = logging.getLogger(__name__)

INVALID_REASONS = ("unreadable", "empty", "unexpected_name", "no_label", "missing_audio")
FILTER_REASONS = ("too_short", "label_not_kept", "split_not_kept", "not_speech", "trial_speaker")
#: How many skipped paths per reason the report keeps as examples.
EXAMPLES_PER_REASON = 3
#: Header reads are I/O bound (network file systems especially): a few threads overlap them.
HEADER_READ_THREADS = 8

OptionValue = Union[str, int, float, bool, None, Sequence[str]]


@dataclass
class Utterance:
    """One audio file a corpus scanner accepted, before its header is checked.

    Arguments
    ---------
    utt_id : str
        The manifest ID.
    path : str
        Absolute path of the audio file.
    labels : dict
        Manifest columns besides ID, duration and wav: ``spk_id`` (may be empty), ``emotion``, ...
    """

    utt_id: str
    path: str
    labels: Dict[str, str] = field(default_factory=dict)


class ScanReport:
    """Rows left out while scanning, per reason, and corpus-specific facts for the report.

    Arguments
    ---------
    skip_invalid : bool
        Count invalid files (see the module docstring); when False, :meth:`skip` raises for them.
    """

    def __init__(self, skip_invalid: bool) -> None:
        self.skip_invalid = skip_invalid
        self.counts: Counter = Counter()
        self.examples: Dict[str, List[str]] = {}
        self.notes: Dict[str, object] = {}

    def skip(self, reason: str, path: str, why: str) -> None:
        """Leaves ``path`` out for ``reason`` (``why`` says what is wrong with it).

        Raises
        ------
        DataError
            ``reason`` is an invalid-file reason and ``skip_invalid`` is False.
        """
        if reason not in INVALID_REASONS + FILTER_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        if reason in INVALID_REASONS and not self.skip_invalid:
            raise DataError(why, path)
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(f"{path}: {why}")

    def describe(self) -> str:
        """``"unreadable 2, too_short 1"``, or ``"none"``."""
        return (
            ", ".join(f"{reason} {count}" for reason, count in sorted(self.counts.items()))
            or "none"
        )

    def log(self) -> None:
        """One warning per invalid reason and one info line per filter, with example paths."""
        for reason, count in sorted(self.counts.items()):
            level = logging.WARNING if reason in INVALID_REASONS else logging.INFO
            logger.log(
                level,
                "skipped %d file(s): %s, e.g. %s",
                count,
                reason,
                "; ".join(self.examples[reason]),
            )


class Skip(Exception):
    """Raised by a corpus's per-file labeller to leave the file out (see :func:`label_files`).

    Arguments
    ---------
    reason : str
        One of ``INVALID_REASONS`` or ``FILTER_REASONS``.
    why : str
        What is wrong with the file, for the log and the error message.
    """

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why


def label_files(
    paths: Sequence[str], label: Callable[[str], Utterance], scan_report: ScanReport
) -> List[Utterance]:
    """``label(path)`` for each path, recording the files it refuses with :class:`Skip`."""
    utterances = []
    for path in paths:
        try:
            utterances.append(label(path))
        except Skip as skip:
            scan_report.skip(skip.reason, path, skip.why)
    return utterances


def kept_emotion(name: str, keep: Sequence[str]) -> str:
    """``name`` if it is to be kept, else :class:`Skip` (``label_not_kept``)."""
    if name not in keep:
        raise Skip("label_not_kept", f"emotion {name!r} is not among {list(keep)}")
    return name


def check_folder(path: PathLike, what: str = "data folder") -> str:
    """The absolute path of an existing folder.

    Raises
    ------
    DataError
        ``path`` is not a folder.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise DataError(f"{what} not found", path)
    return path


def find_audio(folder: str, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> List[str]:
    """Absolute paths of the files under ``folder`` whose extension (any case) is in ``extensions``.

    Sorted, so the manifest order and the "first few" examples are reproducible; hidden files and
    folders are ignored; symbolic links to folders are followed.
    """
    wanted = tuple(extension.lower() for extension in extensions)
    found = []
    for root, folders, files in os.walk(folder, followlinks=True):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [
            os.path.join(root, name)
            for name in files
            if not name.startswith(".") and name.lower().endswith(wanted)
        ]
    return sorted(found)


def split_name(path: str) -> Tuple[str, str]:
    """``("/a/b/x.y.flac")`` → ``("x.y", ".flac")``: the file name without folder and extension."""
    return os.path.splitext(os.path.basename(path))


def check_emotions(emotions: Sequence[str], allowed: Sequence[str]) -> Tuple[str, ...]:
    """Validates an ``emotions`` option (names to keep) against the names a corpus can produce.

    Raises
    ------
    DataError
        An empty selection or a name the corpus does not have.
    """
    unknown = [name for name in emotions if name not in allowed]
    if unknown or not emotions:
        raise DataError(f"emotions option {list(emotions)}: choose among {list(allowed)}")
    return tuple(emotions)


def add_emotions_argument(
    parser: argparse.ArgumentParser, names: Sequence[str], default: Sequence[str]
) -> None:
    """Adds ``--emotions NAME [NAME ...]`` (the names to keep) to a corpus's command line."""
    parser.add_argument(
        "--emotions",
        nargs="+",
        choices=list(names),
        default=argparse.SUPPRESS,
        metavar="NAME",
        help=f"emotion names to keep among {' '.join(names)} (default: {' '.join(default)})",
    )


def run_preparation(
    corpus: str,
    data_folder: PathLike,
    save_csv: PathLike,
    scan: Callable[[str, ScanReport], List[Utterance]],
    options: Dict[str, OptionValue],
    sample_rate: int,
    resample: bool,
    min_duration: float,
    skip_invalid: bool,
) -> Dict[str, object]:
    """Scans a corpus, checks its audio headers and writes the manifest (see the module docstring).

    Arguments
    ---------
    corpus : str
        Name used in logs and the report.
    data_folder, save_csv : PathLike
        The corpus root and the manifest to write.
    scan : callable
        ``scan(absolute_data_folder, scan_report) -> list of Utterance``: the corpus layout.
    options : dict
        The corpus-specific options (JSON-serialisable); with the common ones they decide whether an
        existing ``save_csv`` can be reused.
    sample_rate, resample, min_duration, skip_invalid
        The common options (see the module docstring).

    Returns
    -------
    dict
        ``corpus, data_folder, save_csv, utterances, speakers, hours[, emotions], skipped
        {reason: count}, skipped_examples {reason: [...]}, resampled_files, reused`` plus the
        corpus's notes.

    Raises
    ------
    DataError
        Missing folder, duplicate IDs, wrong sample rate without ``resample``, an invalid file with
        ``skip_invalid=False``, or no usable audio at all.
    """
    data_folder = check_folder(data_folder)
    save_csv = os.path.abspath(os.fspath(save_csv))
    if min_duration < 0 or sample_rate <= 0:
        raise DataError(
            f"min_duration {min_duration} must be >= 0 and sample_rate {sample_rate} > 0"
        )
    # Through JSON and back, so tuples compare equal to the lists read from the sidecar.
    recorded_options = json.loads(
        json.dumps(
            {
                "corpus": corpus,
                "data_folder": data_folder,
                "sample_rate": sample_rate,
                "resample": resample,
                "min_duration": min_duration,
                "skip_invalid": skip_invalid,
                **options,
            }
        )
    )
    if os.path.isfile(save_csv) and not os.path.isfile(_sidecar_path(save_csv)):
        raise DataError(
            "exists and was not written by a data preparation (no "
            f"{os.path.basename(_sidecar_path(save_csv))} beside it); it is left untouched: "
            "choose another --save_csv or delete it",
            save_csv,
        )
    previous = _previous_report(save_csv, recorded_options)
    if previous is not None:
        logger.info("%s: %s was prepared with the same options, skipping", corpus, save_csv)
        return {**previous, "reused": True}

    scan_report = ScanReport(skip_invalid)
    utterances = scan(data_folder, scan_report)
    _check_unique_ids(utterances)
    rows, resampled = _rows_with_durations(
        utterances, scan_report, sample_rate, resample, min_duration
    )
    if not rows:
        raise DataError(
            f"no usable audio found in {data_folder}: "
            f"{sum(scan_report.counts.values())} skipped: {scan_report.describe()}"
        )
    write_manifest(rows, save_csv)
    report: Dict[str, object] = {
        "corpus": corpus,
        "data_folder": data_folder,
        "save_csv": save_csv,
        **summarize(rows),
        "skipped": dict(sorted(scan_report.counts.items())),
        "skipped_examples": scan_report.examples,
        "resampled_files": resampled,
        **scan_report.notes,
    }
    _write_sidecar(save_csv, recorded_options, report)
    scan_report.log()
    if resampled:
        logger.warning(
            "%d file(s) are not at %d Hz: load this manifest with resampling (resample: True)",
            resampled,
            sample_rate,
        )
    logger.info(
        "%s: wrote %s: %d utterances, %d speakers, %.2f h; skipped: %s",
        corpus,
        save_csv,
        report["utterances"],
        report["speakers"],
        report["hours"],
        scan_report.describe(),
    )
    return {**report, "reused": False}


def _check_unique_ids(utterances: Sequence[Utterance]) -> None:
    """Raises DataError naming both files of the first ID that two files share."""
    path_of: Dict[str, str] = {}
    for utterance in utterances:
        first = path_of.setdefault(utterance.utt_id, utterance.path)
        if first != utterance.path:
            raise DataError(
                f"duplicate ID {utterance.utt_id!r}: also made from {first} (remove one of them)",
                utterance.path,
            )


def _rows_with_durations(
    utterances: Sequence[Utterance],
    scan_report: ScanReport,
    sample_rate: int,
    resample: bool,
    min_duration: float,
) -> Tuple[List[Row], int]:
    """Manifest rows of the utterances whose headers are fine; also the count at another rate."""
    with ThreadPoolExecutor(HEADER_READ_THREADS) as pool:
        headers = list(pool.map(_header_or_error, [utterance.path for utterance in utterances]))
    rows: List[Row] = []
    resampled = 0
    for utterance, header in zip(utterances, headers):
        if isinstance(header, DataError):
            scan_report.skip(
                _failure_reason(utterance.path, header), utterance.path, header.message
            )
            continue
        shortest = max(min_duration, MIN_CLIP_SECONDS)  # the encoders' shortest input at least
        if header.duration < shortest:
            scan_report.skip("too_short", utterance.path, f"{header.duration:.3f} s < {shortest} s")
            continue
        if header.sample_rate != sample_rate:
            if not resample:
                raise DataError(
                    f"sample rate is {header.sample_rate} Hz, expected {sample_rate} Hz: resample "
                    "the corpus, or pass resample=True (--resample) to keep such files and "
                    "resample them when loading",
                    utterance.path,
                )
            resampled += 1
        rows.append(
            {
                "ID": utterance.utt_id,
                "duration": header.duration,
                "wav": utterance.path,
                **utterance.labels,
            }
        )
    return rows, resampled


def _header_or_error(path: str) -> Union[AudioInfo, DataError]:
    """The header of ``path``, or the DataError saying why it cannot be read (for a thread pool)."""
    try:
        return audio_info(path)
    except DataError as error:
        return error


def _failure_reason(path: str, error: DataError) -> str:
    """``empty`` for a zero-byte file or one with no samples, else ``unreadable``."""
    no_samples = os.path.isfile(path) and (
        os.path.getsize(path) == 0 or error.message == "audio file is empty"
    )
    return "empty" if no_samples else "unreadable"


def _sidecar_path(save_csv: str) -> str:
    """Where the options and report of ``save_csv`` are stored."""
    return save_csv + ".opts.json"


def _previous_report(save_csv: str, options: Dict[str, object]) -> Optional[Dict[str, object]]:
    """The stored report when ``save_csv`` exists and was made with ``options``, else None."""
    sidecar = _sidecar_path(save_csv)
    if not (os.path.isfile(save_csv) and os.path.isfile(sidecar)):
        return None
    try:
        with open(sidecar, encoding="utf-8") as fin:
            stored = json.load(fin)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("options") != options:
        return None
    return stored.get("report")


def _write_sidecar(save_csv: str, options: Dict[str, object], report: Dict[str, object]) -> None:
    """Stores the options and report next to the manifest (atomically, after the manifest)."""
    sidecar = _sidecar_path(save_csv)
    temporary = sidecar + ".tmp"
    with open(temporary, "w", encoding="utf-8") as fout:
        json.dump({"options": options, "report": report}, fout, indent=2)
    os.replace(temporary, sidecar)
