"""Manifest CSVs: the contract between every stage of the project.

A manifest is a SpeechBrain CSV with one utterance per row and the header
``ID,duration,wav,spk_id`` followed by optional columns (``emotion``, ``split``, ...).
``duration`` is in seconds, ``wav`` an absolute path (or ``$data_root/...``), ``spk_id`` may be
empty for unlabelled corpora. Reading validates every row and raises :class:`DataError` naming the
file and line of the first problem; writing is atomic so a killed run never leaves half a file.
"""
from __future__ import annotations

import csv
import math
import os
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence

from speechbrain_dino.data.file_modes import shareable
from speechbrain_dino.errors import DataError, PathLike

REQUIRED_FIELDS = ("ID", "duration", "wav", "spk_id")
#: Optional columns in the order they are written after the required ones.
KNOWN_OPTIONAL_FIELDS = ("emotion", "split")

Row = Dict[str, str]


def read_manifest(
    path: PathLike,
    required: Sequence[str] = REQUIRED_FIELDS,
    replacements: Optional[Dict[str, str]] = None,
    allow_empty: bool = False,
) -> List[Row]:
    """Read and validate a manifest.

    Arguments
    ---------
    path : PathLike
        The CSV file.
    required : sequence of str
        Columns that must be present (``ID``, ``duration`` and ``wav`` always are).
    replacements : dict, optional
        ``{"data_root": "/data"}`` turns ``$data_root/x.wav`` into ``/data/x.wav``.
    allow_empty : bool
        Accept a manifest with a header and no rows.

    Returns
    -------
    list of dict
        One dict per row, values as strings, ``duration`` checked to be a positive number.

    Raises
    ------
    DataError
        Missing file, missing columns, empty manifest, duplicate ID, bad duration, empty wav.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("manifest not found", path)
    needed = list(dict.fromkeys(("ID", "duration", "wav", *required)))
    with open(path, newline="", encoding="utf-8-sig") as fin:  # a byte-order mark is skipped
        reader = csv.DictReader(fin)
        header = reader.fieldnames or []
        missing = [name for name in needed if name not in header]
        if missing:
            raise DataError(
                f"missing column(s) {missing}; header is {header}, expected at least "
                f"{list(needed)}",
                path,
                1,
            )
        rows: List[Row] = []
        first_line_of: Dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if None in row or any(value is None for value in row.values()):
                raise DataError(
                    f"expected {len(header)} fields as in the header, found another count",
                    path,
                    line,
                )
            rows.append(_validated_row(row, path, line, first_line_of, replacements))
    if not rows and not allow_empty:
        raise DataError("manifest has no rows", path)
    return rows


def _validated_row(
    row: Row,
    path: str,
    line: int,
    first_line_of: Dict[str, int],
    replacements: Optional[Dict[str, str]],
) -> Row:
    """Checks one row in place and records its ID (see :func:`read_manifest`)."""
    utt_id = row["ID"].strip()
    if not utt_id:
        raise DataError("empty ID", path, line)
    if utt_id in first_line_of:
        raise DataError(
            f"duplicate ID {utt_id!r} (first at line {first_line_of[utt_id]})", path, line
        )
    first_line_of[utt_id] = line
    try:
        duration = float(row["duration"])
    except ValueError:
        raise DataError(f"duration {row['duration']!r} is not a number", path, line) from None
    if not math.isfinite(duration) or duration <= 0:
        raise DataError(f"duration {duration} must be a positive number of seconds", path, line)
    wav = row["wav"].strip()
    if not wav:
        raise DataError("empty wav path", path, line)
    for key, value in (replacements or {}).items():
        wav = wav.replace("$" + key, value)
    row["ID"], row["wav"] = utt_id, wav
    return row


def write_manifest(rows: Iterable[Row], path: PathLike) -> None:
    """Write rows as a manifest, atomically (a temporary file renamed into place).

    Columns: the required ones, then the known optional ones that any row has, then any other
    column in first-seen order.

    Arguments
    ---------
    rows : iterable of dict
        Each with at least ``ID``, ``duration`` and ``wav``; missing ``spk_id`` is written empty.
    path : PathLike
        Destination; its folder is created.
    """
    rows = list(rows)
    present: Dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row))
    extra = [name for name in KNOWN_OPTIONAL_FIELDS if name in present]
    extra += [name for name in present if name not in REQUIRED_FIELDS and name not in extra]
    fields = list(REQUIRED_FIELDS) + extra
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=".manifest-", suffix=".csv")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as fout:
            writer = csv.DictWriter(fout, fieldnames=fields, restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow(_formatted(row))
        os.chmod(tmp_path, shareable(0o644))
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _formatted(row: Row) -> Row:
    """Durations as seconds with millisecond precision, other values unchanged."""
    out = dict(row)
    duration = out.get("duration")
    if duration is not None and not isinstance(duration, str):
        out["duration"] = f"{float(duration):.3f}"
    return out


def summarize(rows: Sequence[Row]) -> Dict[str, float]:
    """Counts for a report: utterances, labelled speakers, hours (and emotions when present).

    Returns
    -------
    dict
        ``{"utterances": int, "speakers": int, "hours": float[, "emotions": int]}``.
    """
    speakers = {row.get("spk_id", "") for row in rows} - {""}
    summary: Dict[str, float] = {
        "utterances": len(rows),
        "speakers": len(speakers),
        "hours": round(sum(float(row["duration"]) for row in rows) / 3600.0, 4),
    }
    emotions = {row.get("emotion", "") for row in rows} - {""}
    if emotions:
        summary["emotions"] = len(emotions)
    return summary
