"""Verification trial lists: one ``label enrol test`` line per trial (the VoxCeleb format).

A :class:`Trials` holds the labels and, for each side, an index into a table of utterance IDs
(the rows of an embedding table), so scoring gathers embedding rows without any string work.
Reading resolves each trial id against that table: an ID found as is, or else the official
VoxCeleb path form ``id10270/x6uYqmx31kE/00001.wav`` turned into the manifest ID
``id10270--x6uYqmx31kE--00001`` (extension dropped, ``/`` replaced by ``--``), the rule the
folder preparation uses too. Problems are raised as :class:`DataError` naming the file and line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from speechbrain_dino.errors import DataError, PathLike

#: Accepted label spellings (case-insensitive) and their value.
LABELS = {"1": 1, "0": 0, "target": 1, "nontarget": 0}
#: Unknown ids quoted in the error message.
SHOWN_UNKNOWN = 5


@dataclass(frozen=True)
class Trials:
    """A trial list whose two sides index into ``ids``.

    Attributes
    ----------
    labels : np.ndarray
        ``[M]`` int8, 1 for a target (same speaker) trial, 0 for a non-target.
    enrol : np.ndarray
        ``[M]`` int64, row of ``ids`` (and of the matching embedding table) for the enrol side.
    test : np.ndarray
        ``[M]`` int64, likewise for the test side.
    ids : list of str
        The utterance IDs the indices point into, in embedding-table order.
    """

    labels: np.ndarray
    enrol: np.ndarray
    test: np.ndarray
    ids: List[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def enrol_ids(self) -> List[str]:
        """Enrol utterance ID of each trial, ``[M]``."""
        return [self.ids[index] for index in self.enrol]

    @property
    def test_ids(self) -> List[str]:
        """Test utterance ID of each trial, ``[M]``."""
        return [self.ids[index] for index in self.test]


def path_to_id(trial_id: str) -> str:
    """``id10270/x6uYqmx31kE/00001.wav`` → ``id10270--x6uYqmx31kE--00001``."""
    return os.path.splitext(trial_id)[0].replace("/", "--")


def read_trials(path: PathLike, known_ids: Sequence[str]) -> Trials:
    """Reads a trial list and resolves its ids against ``known_ids``.

    Arguments
    ---------
    path : PathLike
        Text file, one ``label enrol test`` trial per line, whitespace separated; labels
        ``1``/``0`` or ``target``/``nontarget``. Blank lines are skipped.
    known_ids : sequence of str
        ``[N]`` utterance IDs, e.g. the ids of an embedding table; the returned indices point here.

    Returns
    -------
    Trials
        With ``ids = list(known_ids)``.

    Raises
    ------
    DataError
        Missing or empty file; a line without exactly three fields or with an unknown label
        (naming that line); ids not in ``known_ids`` (one error with their count and the first
        few, each with its line); a list with only target or only non-target trials.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("trial list not found", path)
    position = {utt_id: index for index, utt_id in enumerate(known_ids)}
    labels: List[int] = []
    sides: List[int] = []
    unknown: List[Tuple[int, str]] = []
    with open(path, encoding="utf-8") as fin:
        for line_number, line in enumerate(fin, start=1):
            fields = line.split()
            if not fields:
                continue
            labels.append(_parse_label(fields, path, line_number))
            for trial_id in fields[1:]:
                index = _resolve(trial_id, position)
                if index is None:
                    unknown.append((line_number, trial_id))
                sides.append(-1 if index is None else index)
    if not labels:
        raise DataError("trial list has no trials", path)
    if unknown:
        raise DataError(_unknown_message(unknown, len(position)), path)
    if len(set(labels)) < 2:
        kind = "target" if labels[0] else "non-target"
        raise DataError(f"all {len(labels)} trials are {kind}: EER and minDCF need both kinds", path)
    pairs = np.asarray(sides, dtype=np.int64).reshape(-1, 2)
    return Trials(np.asarray(labels, dtype=np.int8), pairs[:, 0], pairs[:, 1], list(known_ids))


def _parse_label(fields: List[str], path: str, line_number: int) -> int:
    """Label of one split trial line, checking it has three fields."""
    if len(fields) != 3:
        raise DataError(
            f"expected 3 fields 'label enrol test', found {len(fields)}", path, line_number
        )
    label = LABELS.get(fields[0].lower())
    if label is None:
        raise DataError(
            f"label {fields[0]!r} is not one of {sorted(LABELS)}", path, line_number
        )
    return label


def _resolve(trial_id: str, position: Dict[str, int]) -> Optional[int]:
    """Row of ``trial_id`` as a manifest ID, else as a VoxCeleb-style path; None if neither."""
    index = position.get(trial_id)
    return position.get(path_to_id(trial_id)) if index is None else index


def _unknown_message(unknown: List[Tuple[int, str]], table_size: int) -> str:
    """One message for every unresolved id: how many, and the first few with their lines."""
    shown = "; ".join(f"line {line}: {trial_id!r}" for line, trial_id in unknown[:SHOWN_UNKNOWN])
    return (
        f"{len(unknown)} trial id(s) match no utterance of the {table_size} embedded "
        f"(tried as ID and as path with '/' -> '--', no extension), first: {shown}"
    )


def write_trials(trials: Trials, path: PathLike, scores: Optional[np.ndarray] = None) -> None:
    """Writes ``label enrol test`` lines, or ``label enrol test score`` per-trial score lines.

    Arguments
    ---------
    trials : Trials
        Written with labels ``1``/``0`` and the IDs of ``trials.ids``.
    path : PathLike
        Destination; its folder is created.
    scores : np.ndarray, optional
        ``[M]`` scores (raw or normalised) appended as a fourth column, each written with the
        digits that read back to the same float64 (no rounding, so no ties added).
    """
    columns = [trials.labels.astype(str), trials.enrol_ids, trials.test_ids]
    if scores is not None:
        if len(scores) != len(trials):
            raise ValueError(f"{len(scores)} scores for {len(trials)} trials")
        columns.append([repr(score) for score in np.asarray(scores, dtype=np.float64).tolist()])
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fout:
        fout.writelines(" ".join(fields) + "\n" for fields in zip(*columns))


def same_trials(first: Trials, second: Trials) -> bool:
    """Whether two trial lists hold the same trials in the same order (ids, sides and labels)."""
    return (first.ids == second.ids and np.array_equal(first.enrol, second.enrol)
            and np.array_equal(first.test, second.test) and np.array_equal(first.labels, second.labels))


def read_scores(path: PathLike) -> Tuple[Trials, np.ndarray]:
    """Reads a per-trial score file (``label enrol test score`` lines, as :func:`write_trials`
    writes them with scores): its trials, indexing the ids in the order they first appear, and
    their scores ``[M]``.

    Raises
    ------
    DataError
        Missing file, or a line without four fields, with an unknown label or a score that is not
        a number (naming that line).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("score file not found", path)
    position: Dict[str, int] = {}
    labels: List[int] = []
    sides: List[int] = []
    scores: List[float] = []
    with open(path, encoding="utf-8") as fin:
        for line_number, line in enumerate(fin, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise DataError(f"expected 4 fields 'label enrol test score', found {len(fields)}", path, line_number)
            labels.append(_parse_label(fields[:3], path, line_number))
            sides.extend(position.setdefault(trial_id, len(position)) for trial_id in fields[1:3])
            try:
                scores.append(float(fields[3]))
            except ValueError:
                raise DataError(f"score {fields[3]!r} is not a number", path, line_number) from None
    pairs = np.asarray(sides, dtype=np.int64).reshape(-1, 2)
    trials = Trials(np.asarray(labels, dtype=np.int8), pairs[:, 0], pairs[:, 1], list(position))
    return trials, np.asarray(scores, dtype=np.float64)
