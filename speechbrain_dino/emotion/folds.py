"""Speaker-independent evaluation folds for emotion recognition.

Every protocol keeps each speaker on one side of every fold, as in the paper's evaluation:

- ``iemocap``: leave one session out (session = ``spk_id[:5]``, e.g. ``Ses01``), 5 folds.
- ``cremad``: K folds by actor (4-digit ``spk_id``), shuffled with ``seed``.
- ``ravdess``: K folds by actor (``spk_id`` ``"01"``..``"24"``, odd ids male), each fold with a
  balanced share of male and female actors.
- ``msp_podcast``: the official partitions from the ``split`` column: train ``Train``,
  validation ``Development`` (used for hyperparameter selection), test ``Test1`` (or ``Test2``);
  one fold; unknown (empty) speakers are allowed.
- ``speaker_kfold``: K folds by ``spk_id`` for any manifest, shuffled with ``seed``.

Fold indices point into the manifest rows as given, so they also index an embedding matrix
extracted from the same rows.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from speechbrain_dino.errors import DataError

logger = logging.getLogger(__name__)

Row = Dict[str, str]

PROTOCOLS = ("iemocap", "cremad", "msp_podcast", "ravdess", "speaker_kfold")
#: Official MSP-Podcast ``Split_Set`` values for training and validation.
MSP_TRAIN, MSP_DEV = "Train", "Development"
MSP_TEST_SETS = ("Test1", "Test2")

_IEMOCAP_SPEAKER = re.compile(r"Ses\d\d[FM]")
_CREMAD_SPEAKER = re.compile(r"10\d\d")
_RAVDESS_SPEAKER = re.compile(r"0[1-9]|1\d|2[0-4]")
_RAVDESS_STEM = re.compile(r"\d\d-\d\d-\d\d-\d\d-\d\d-\d\d-\d\d")


@dataclass(frozen=True)
class Fold:
    """One train/test partition of a manifest.

    Attributes
    ----------
    name : str
        Held-out part, e.g. ``"Ses01"``, ``"fold3"`` or ``"Test1"``.
    train_index : np.ndarray
        [n_train] int row indices for training the classifier.
    test_index : np.ndarray
        [n_test] int row indices it is scored on.
    valid_index : np.ndarray, optional
        [n_valid] int row indices of an official validation set for hyperparameter selection;
        ``None`` means select by cross-validation inside ``train_index``.
    protocol : str
        The protocol that made the fold (one of :data:`PROTOCOLS`).
    """

    name: str
    train_index: np.ndarray
    test_index: np.ndarray
    valid_index: Optional[np.ndarray] = None
    protocol: str = "speaker_kfold"

    @property
    def fit_index(self) -> np.ndarray:
        """[n_train + n_valid] the rows that training and hyperparameter selection may use."""
        if self.valid_index is None:
            return self.train_index
        return np.concatenate([self.train_index, self.valid_index])


def speaker_independent_folds(
    rows: Sequence[Row],
    protocol: str = "auto",
    n_folds: int = 5,
    seed: int = 0,
    drop_unlabelled: bool = False,
    msp_test_set: str = "Test1",
) -> List[Fold]:
    """Folds in which no speaker is both trained on and tested on.

    Arguments
    ---------
    rows : sequence of dict
        Manifest rows with ``ID``, ``spk_id`` and ``emotion`` (and ``split`` for MSP-Podcast).
    protocol : str
        ``"auto"`` (see :func:`detect_protocol`) or one of :data:`PROTOCOLS`.
    n_folds : int
        Number of folds for ``cremad``, ``ravdess`` and ``speaker_kfold`` (the others are fixed).
    seed : int
        Shuffles the speaker-to-fold assignment of the K-fold protocols.
    drop_unlabelled : bool
        Leave rows with an empty ``emotion`` out of every fold (their count is logged) instead
        of raising.
    msp_test_set : str
        ``"Test1"`` or ``"Test2"``: the MSP-Podcast test partition.

    Returns
    -------
    list of Fold

    Raises
    ------
    DataError
        Unknown protocol, missing ``emotion`` column, an empty emotion (unless dropped), an empty
        ``spk_id`` under a speaker-based protocol, fewer speakers than folds, missing partitions.
    """
    labelled = _labelled_indices(rows, drop_unlabelled)
    if protocol == "auto":
        protocol = detect_protocol(rows)
    if protocol == "msp_podcast":
        return [_msp_fold(rows, labelled, msp_test_set)]
    if protocol not in PROTOCOLS:
        raise DataError(
            f"unknown fold protocol {protocol!r}; expected 'auto' or one of {PROTOCOLS}"
        )
    speakers = _speakers(rows, labelled)
    if protocol == "iemocap":
        return _iemocap_folds(speakers, labelled)
    if n_folds < 2:
        raise DataError(f"n_folds must be at least 2, got {n_folds}")
    distinct = np.unique(speakers)
    if len(distinct) < n_folds:
        raise DataError(
            f"only {len(distinct)} speaker(s) for {n_folds} speaker-independent folds; "
            "lower n_folds or add speakers"
        )
    if protocol == "cremad":
        _check_speaker_pattern(speakers, _CREMAD_SPEAKER, "cremad", "'1001'..'1091'")
    if protocol == "ravdess":
        _check_speaker_pattern(speakers, _RAVDESS_SPEAKER, "ravdess", "'01'..'24'")
        is_male = np.array([int(speaker) % 2 for speaker in speakers])
        splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(speakers, is_male, groups=speakers)
    else:
        splitter = GroupKFold(n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(speakers, groups=speakers)
    return [
        Fold(f"fold{number}", labelled[train], labelled[test], protocol=protocol)
        for number, (train, test) in enumerate(splits, start=1)
    ]


def detect_protocol(rows: Sequence[Row]) -> str:
    """Guesses the corpus protocol from the columns and the ID / ``spk_id`` patterns.

    ``msp_podcast`` when a ``split`` column holds official MSP-Podcast partition names;
    ``iemocap`` when every ``spk_id`` looks like ``Ses01F``; ``cremad`` when every ``spk_id`` is
    a CREMA-D actor (``1001``..``1091``); ``ravdess`` when every ``spk_id`` is ``01``..``24``
    and every ID holds a RAVDESS file stem (``03-01-05-01-02-01-12``); else ``speaker_kfold``.
    """
    splits = {row.get("split", "") for row in rows}
    if MSP_TRAIN in splits and splits & set(MSP_TEST_SETS):
        return "msp_podcast"
    speakers = [row.get("spk_id", "") for row in rows]

    def all_match(pattern: re.Pattern, values: Sequence[str]) -> bool:
        return all(pattern.fullmatch(value) for value in values)

    if all_match(_IEMOCAP_SPEAKER, speakers):
        return "iemocap"
    if all_match(_CREMAD_SPEAKER, speakers):
        return "cremad"
    if all_match(_RAVDESS_SPEAKER, speakers) and all(
        _RAVDESS_STEM.search(row["ID"]) for row in rows
    ):
        return "ravdess"
    return "speaker_kfold"


def assert_speaker_independent(rows: Sequence[Row], folds: Sequence[Fold]) -> None:
    """Raises :class:`DataError` if a known speaker is on both sides of any fold.

    The training side is ``train_index`` plus ``valid_index``; empty ``spk_id`` values
    (unknown speakers) are not compared.
    """
    for fold in folds:
        fit_speakers = {rows[index]["spk_id"] for index in fold.fit_index}
        test_speakers = {rows[index]["spk_id"] for index in fold.test_index}
        shared = sorted((fit_speakers & test_speakers) - {""})
        if shared:
            raise DataError(
                f"fold {fold.name!r} is not speaker-independent: speaker(s) {shared[:10]} "
                f"({len(shared)} in all) are in both its training and test parts"
            )


def _labelled_indices(rows: Sequence[Row], drop_unlabelled: bool) -> np.ndarray:
    """[n_labelled] indices of rows with a non-empty emotion (see ``drop_unlabelled``)."""
    if not rows:
        raise DataError("no rows to split into folds")
    if "emotion" not in rows[0]:
        raise DataError("the manifest has no 'emotion' column; emotion folds need labels")
    empty = [index for index, row in enumerate(rows) if not row["emotion"].strip()]
    if empty and not drop_unlabelled:
        first = empty[0]
        raise DataError(
            f"utterance {rows[first]['ID']!r} (row {first + 1}, manifest line {first + 2}) has an "
            f"empty emotion ({len(empty)} such row(s)); pass drop_unlabelled=True to leave them out"
        )
    if empty:
        logger.warning("left %d row(s) with an empty emotion out of the folds", len(empty))
    return np.setdiff1d(np.arange(len(rows)), empty)


def _speakers(rows: Sequence[Row], labelled: np.ndarray) -> np.ndarray:
    """[n_labelled] speaker ids; raises if one is empty (a speaker protocol needs them all)."""
    speakers = np.array([rows[index].get("spk_id", "").strip() for index in labelled])
    missing = np.flatnonzero(speakers == "")
    if len(missing):
        first = int(labelled[missing[0]])
        raise DataError(
            f"utterance {rows[first]['ID']!r} (row {first + 1}, manifest line {first + 2}) has an "
            f"empty spk_id ({len(missing)} such row(s)); speaker-independent folds need every "
            "speaker"
        )
    return speakers


def _check_speaker_pattern(
    speakers: np.ndarray, pattern: re.Pattern, protocol: str, expected: str
) -> None:
    """Raises if a speaker id does not have the shape ``protocol`` relies on."""
    wrong = sorted({speaker for speaker in speakers if not pattern.fullmatch(speaker)})
    if wrong:
        raise DataError(
            f"protocol {protocol!r} expects spk_id like {expected}, found {wrong[:5]}; "
            "use protocol='speaker_kfold' for other corpora"
        )


def _iemocap_folds(speakers: np.ndarray, labelled: np.ndarray) -> List[Fold]:
    """Leave-one-session-out folds; session = ``spk_id[:5]``."""
    _check_speaker_pattern(speakers, _IEMOCAP_SPEAKER, "iemocap", "'Ses01F'")
    sessions = np.array([speaker[:5] for speaker in speakers])
    names = np.unique(sessions)
    if len(names) < 2:
        raise DataError(f"leave-one-session-out needs at least 2 sessions, found {list(names)}")
    if len(names) != 5:
        logger.warning("IEMOCAP has 5 sessions, this manifest %d: %s", len(names), list(names))
    return [
        Fold(
            str(name),
            labelled[sessions != name],
            labelled[sessions == name],
            protocol="iemocap",
        )
        for name in names
    ]


def _msp_fold(rows: Sequence[Row], labelled: np.ndarray, test_set: str) -> Fold:
    """The official MSP-Podcast partition as one fold (train, Development as valid, test)."""
    if test_set not in MSP_TEST_SETS:
        raise DataError(f"msp_test_set must be one of {MSP_TEST_SETS}, got {test_set!r}")
    if "split" not in rows[0]:
        raise DataError("protocol 'msp_podcast' needs a 'split' column (Split_Set values)")
    partitions = np.array([rows[index]["split"].strip() for index in labelled])
    parts = {}
    for name in (MSP_TRAIN, MSP_DEV, test_set):
        parts[name] = labelled[partitions == name]
        if not len(parts[name]):
            raise DataError(
                f"no labelled rows with split {name!r}; found {sorted(set(partitions))}"
            )
    return Fold(
        test_set, parts[MSP_TRAIN], parts[test_set], parts[MSP_DEV], protocol="msp_podcast"
    )
