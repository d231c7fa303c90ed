"""Trial lists for corpora without official ones, drawn from (held-out) manifest rows.

Target trials pair two utterances of one speaker, optionally differing in every ``cross`` field
(another emotion, another sentence) so that the trial tests the speaker and not the recording
condition; non-target trials pair two speakers, optionally agreeing on ``same_field`` (gender).
A field is a manifest column name or a function of the row (e.g. the RAVDESS sentence parsed
from the ID). Every pair is unordered, never an utterance with itself, never repeated, and the
draw is deterministic for a seed. With no count asked, every valid pair is taken: all pairs of a
small set (RAVDESS actors 17-24: 480 utterances, 114,960 trials).
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, Hashable, Optional, Sequence, Tuple, Union

import numpy as np

from speechbrain_dino.data.manifest import Row
from speechbrain_dino.errors import DataError
from speechbrain_dino.verification.trials import Trials

logger = logging.getLogger(__name__)

#: A manifest column name or a function of a row.
Field = Union[str, Callable[[Row], Hashable]]
Pairs = Tuple[np.ndarray, np.ndarray]


def generate_trials(
    rows: Sequence[Row],
    n_target: Optional[int] = None,
    n_nontarget: Optional[int] = None,
    seed: int = 0,
    cross: Sequence[Field] = (),
    same_field: Optional[Field] = None,
) -> Trials:
    """Draws target and non-target trials over ``rows`` (speaker from ``spk_id``).

    Arguments
    ---------
    rows : sequence of dict
        ``[N]`` manifest rows, each with a non-empty ``spk_id``.
    n_target, n_nontarget : int, optional
        How many of each to draw uniformly among the valid pairs; None takes every valid pair.
        When fewer valid pairs exist than asked, all are taken and a warning is logged.
    seed : int
        Seed of the draw; the same rows and seed give the same trials.
    cross : sequence of Field
        Target pairs must differ in each of these (e.g. ``("emotion",)``).
    same_field : Field, optional
        Non-target pairs must agree on this (e.g. a gender function).

    Returns
    -------
    Trials
        Sorted by (enrol, test), indices into ``ids = [row["ID"] for row in rows]``, the
        lower row index on the enrol side.

    Raises
    ------
    DataError
        No rows, an empty ``spk_id``, or rows that give only one kind of trial (a single
        speaker, or no speaker with two utterances).
    """
    if not rows:
        raise DataError("no rows to generate trials from")
    speakers = field_codes(rows, "spk_id")
    if any(row["spk_id"] == "" for row in rows):
        raise DataError("every row needs a spk_id to generate trials; some are empty")
    rng = np.random.default_rng(seed)
    cross_codes = [field_codes(rows, field) for field in cross]
    target = _within_speaker_pairs(speakers, cross_codes)
    target = _take(target, n_target, rng, "target")
    same = None if same_field is None else field_codes(rows, same_field)
    nontarget = _nontarget_pairs(speakers, same, n_nontarget, rng)
    enrol = np.concatenate([target[0], nontarget[0]])
    test = np.concatenate([target[1], nontarget[1]])
    if not len(target[0]) or not len(nontarget[0]):
        raise DataError(
            f"the rows give {len(target[0])} target and {len(nontarget[0])} non-target trials "
            f"({len(set(speakers.tolist()))} speaker(s)): EER and minDCF need both kinds; "
            "use a manifest with more speakers or utterances per speaker"
        )
    labels = np.repeat(np.array([1, 0], np.int8), [len(target[0]), len(nontarget[0])])
    order = np.lexsort((test, enrol))
    return Trials(labels[order], enrol[order], test[order], [row["ID"] for row in rows])


def field_codes(rows: Sequence[Row], field: Field) -> np.ndarray:
    """``[N]`` int64 codes, equal where the field's values are equal."""
    code_of: Dict[Hashable, int] = {}
    try:
        values = [field(row) if callable(field) else row[field] for row in rows]
    except KeyError as missing:
        raise DataError(f"rows have no column {missing} needed to generate trials") from None
    return np.asarray([code_of.setdefault(value, len(code_of)) for value in values], np.int64)


def _within_speaker_pairs(speakers: np.ndarray, cross_codes: Sequence[np.ndarray]) -> Pairs:
    """Every same-speaker pair ``i < j`` that differs in each cross field."""
    enrol, test = [], []
    for speaker in np.unique(speakers):
        members = np.flatnonzero(speakers == speaker)
        first, second = np.triu_indices(len(members), k=1)
        enrol.append(members[first])
        test.append(members[second])
    pairs = np.concatenate(enrol), np.concatenate(test)
    differs = np.ones(len(pairs[0]), dtype=bool)
    for codes in cross_codes:
        differs &= codes[pairs[0]] != codes[pairs[1]]
    return _keep(pairs, differs)


def _nontarget_pairs(
    speakers: np.ndarray, same: Optional[np.ndarray], count: Optional[int], rng: np.random.Generator
) -> Pairs:
    """Different-speaker pairs ``i < j`` (agreeing on ``same``): all, or ``count`` drawn."""
    same = np.zeros_like(speakers) if same is None else same
    available = _count_nontarget(speakers, same)
    if count is None or count >= available:
        first, second = np.triu_indices(len(speakers), k=1)
        valid = (speakers[first] != speakers[second]) & (same[first] == same[second])
        return _take(_keep((first, second), valid), count, rng, "non-target")
    return _sample_nontarget(speakers, same, count, available, rng)


def _count_nontarget(speakers: np.ndarray, same: np.ndarray) -> int:
    """Number of unordered pairs with the same ``same`` code and different speakers."""
    _, group_sizes = np.unique(same, return_counts=True)
    _, speaker_group_sizes = np.unique(np.stack([same, speakers]), axis=1, return_counts=True)
    return int(_pair_count(group_sizes) - _pair_count(speaker_group_sizes))


def _pair_count(sizes: np.ndarray) -> int:
    """Unordered pairs within groups of these sizes."""
    return int((sizes.astype(np.int64) * (sizes - 1) // 2).sum())


def _sample_nontarget(
    speakers: np.ndarray, same: np.ndarray, count: int, available: int, rng: np.random.Generator
) -> Pairs:
    """``count`` distinct valid pairs drawn uniformly, by rejection in vectorised rounds."""
    size = len(speakers)
    acceptance = available / (size * (size - 1) / 2)
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < count:
        draws = int(min(1e7, 1.2 * (count - len(keys)) / acceptance + 64))
        first, second = rng.integers(0, size, size=(2, draws))
        first, second = np.minimum(first, second), np.maximum(first, second)
        valid = (speakers[first] != speakers[second]) & (same[first] == same[second])
        new_keys = first[valid] * size + second[valid]
        new_keys = new_keys[np.sort(np.unique(new_keys, return_index=True)[1])]
        keys = np.concatenate([keys, new_keys[~np.isin(new_keys, keys)]])
    keys = keys[:count]
    return keys // size, keys % size


def _take(pairs: Pairs, count: Optional[int], rng: np.random.Generator, kind: str) -> Pairs:
    """All pairs, or ``count`` of them drawn without replacement (all, logged, if fewer)."""
    available = len(pairs[0])
    if count is None:
        return pairs
    if count > available:
        logger.warning(
            "only %d valid %s pairs exist (%d asked): taking all", available, kind, count
        )
        return pairs
    return _keep(pairs, np.sort(rng.choice(available, size=count, replace=False)))


def _keep(pairs: Pairs, selection: np.ndarray) -> Pairs:
    """Both sides of ``pairs`` indexed by one mask or index array."""
    return pairs[0][selection], pairs[1][selection]
