"""Speaker-independent folds on fabricated manifests shaped like each corpus."""
from __future__ import annotations

import logging
from typing import Dict, List

import numpy as np
import pytest

from speechbrain_dino.emotion.folds import (
    Fold,
    assert_speaker_independent,
    detect_protocol,
    speaker_independent_folds,
)
from speechbrain_dino.errors import DataError

Row = Dict[str, str]


def _row(utt_id: str, spk_id: str, emotion: str, **extra: str) -> Row:
    return {"ID": utt_id, "duration": "2.0", "wav": f"/data/{utt_id}.wav", "spk_id": spk_id,
            "emotion": emotion, **extra}


def iemocap_rows() -> List[Row]:
    emotions = ("neu", "hap", "ang", "sad")
    return [
        _row(f"Ses0{session}{sex}_impro0{take}_{sex}00{turn}", f"Ses0{session}{sex}",
             emotions[(take + turn) % 4])
        for session in range(1, 6) for sex in "FM" for take in range(1, 3) for turn in range(3)
    ]


def cremad_rows() -> List[Row]:
    emotions = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    return [
        _row(f"{actor}_IEO_{emotion}_MD", str(actor), emotion)
        for actor in range(1001, 1013) for emotion in emotions
    ]


def ravdess_rows() -> List[Row]:
    return [
        _row(f"03-01-0{emotion}-01-01-01-{actor:02d}", f"{actor:02d}", f"e{emotion}")
        for actor in range(1, 25) for emotion in range(1, 9)
    ]


def msp_rows() -> List[Row]:
    rows = []
    for number, split in enumerate(["Train"] * 12 + ["Development"] * 4 + ["Test1"] * 4
                                   + ["Test2"] * 3 + ["Test3"] * 2):
        speaker = "" if number % 5 == 0 else f"{split}_{number % 3}"
        rows.append(_row(f"MSP-PODCAST_{number:04d}_0001", speaker, "AN"[number % 2], split=split))
    return rows


def generic_rows(n_speakers: int = 7) -> List[Row]:
    return [
        _row(f"utt_{speaker}_{turn}", f"speaker{speaker}", f"emotion{turn % 3}")
        for speaker in range(n_speakers) for turn in range(speaker + 2)
    ]


def speakers_of(rows: List[Row], index: np.ndarray) -> set:
    return {rows[i]["spk_id"] for i in index}


@pytest.mark.parametrize(
    "make_rows, protocol, n_folds",
    [
        (iemocap_rows, "iemocap", 5),
        (cremad_rows, "cremad", 5),
        (ravdess_rows, "ravdess", 5),
        (msp_rows, "msp_podcast", 1),
        (generic_rows, "speaker_kfold", 5),
    ],
)
def test_auto_protocol_is_speaker_independent(make_rows, protocol, n_folds):
    rows = make_rows()
    assert detect_protocol(rows) == protocol
    folds = speaker_independent_folds(rows)
    assert len(folds) == n_folds
    assert all(fold.protocol == protocol for fold in folds)
    assert_speaker_independent(rows, folds)
    for fold in folds:
        assert not (speakers_of(rows, fold.train_index) & speakers_of(rows, fold.test_index)) - {""}
        assert not set(fold.train_index) & set(fold.test_index)
    if protocol != "msp_podcast":  # K-fold protocols test every row exactly once
        tested = np.sort(np.concatenate([fold.test_index for fold in folds]))
        np.testing.assert_array_equal(tested, np.arange(len(rows)))


def test_iemocap_leaves_one_session_out():
    rows = iemocap_rows()
    folds = speaker_independent_folds(rows, protocol="iemocap", n_folds=3)  # n_folds is ignored
    assert [fold.name for fold in folds] == ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]
    for fold in folds:
        assert speakers_of(rows, fold.test_index) == {fold.name + "F", fold.name + "M"}
        assert {spk[:5] for spk in speakers_of(rows, fold.train_index)} == (
            {f"Ses0{s}" for s in range(1, 6)} - {fold.name}
        )
        assert len(fold.train_index) + len(fold.test_index) == len(rows)


def test_msp_uses_official_partitions():
    rows = msp_rows()
    (fold,) = speaker_independent_folds(rows)
    split_of = np.array([row["split"] for row in rows])
    np.testing.assert_array_equal(fold.train_index, np.flatnonzero(split_of == "Train"))
    np.testing.assert_array_equal(fold.valid_index, np.flatnonzero(split_of == "Development"))
    np.testing.assert_array_equal(fold.test_index, np.flatnonzero(split_of == "Test1"))
    assert fold.name == "Test1"
    (fold2,) = speaker_independent_folds(rows, protocol="msp_podcast", msp_test_set="Test2")
    np.testing.assert_array_equal(fold2.test_index, np.flatnonzero(split_of == "Test2"))
    without_dev = [row for row in rows if row["split"] != "Development"]
    with pytest.raises(DataError, match="Development"):
        speaker_independent_folds(without_dev, protocol="msp_podcast")


def test_ravdess_folds_balance_gender():
    rows = ravdess_rows()
    for seed in range(3):
        folds = speaker_independent_folds(rows, protocol="ravdess", seed=seed)
        for fold in folds:
            actors = [int(actor) for actor in speakers_of(rows, fold.test_index)]
            males = sum(actor % 2 for actor in actors)
            assert 4 <= len(actors) <= 5 and 2 <= males <= 3, (seed, fold.name, actors)


def test_too_few_speakers_is_a_clear_error():
    with pytest.raises(DataError, match="only 3 speaker.*5 speaker-independent folds"):
        speaker_independent_folds(generic_rows(3), n_folds=5)


def test_empty_emotion_names_the_row_or_is_dropped(caplog):
    rows = generic_rows()
    rows[4]["emotion"] = ""
    with pytest.raises(DataError, match=r"'utt_1_2'.*line 6.*empty emotion"):
        speaker_independent_folds(rows)
    with caplog.at_level(logging.WARNING):
        folds = speaker_independent_folds(rows, drop_unlabelled=True)
    assert "1 row(s)" in caplog.text
    tested = np.concatenate([fold.test_index for fold in folds])
    assert 4 not in tested and len(tested) == len(rows) - 1


def test_empty_speaker_fails_speaker_protocols_but_not_msp():
    rows = generic_rows()
    rows[3]["spk_id"] = ""
    with pytest.raises(DataError, match="'utt_1_1'.*line 5.*empty spk_id"):
        speaker_independent_folds(rows)
    assert "" in {row["spk_id"] for row in msp_rows()}
    speaker_independent_folds(msp_rows(), protocol="msp_podcast")


def test_wrong_shapes_for_an_explicit_protocol_are_errors():
    with pytest.raises(DataError, match="Ses01F"):
        speaker_independent_folds(generic_rows(), protocol="iemocap")
    with pytest.raises(DataError, match="unknown fold protocol"):
        speaker_independent_folds(generic_rows(), protocol="voxceleb")
    with pytest.raises(DataError, match="no 'emotion' column"):
        speaker_independent_folds([{"ID": "a", "spk_id": "s"}])


def test_assert_speaker_independent_catches_a_leak():
    rows = generic_rows()
    leaky = Fold("leaky", np.array([0, 2]), np.array([1]))  # rows 0 and 1: speaker0
    with pytest.raises(DataError, match="'leaky'.*speaker0"):
        assert_speaker_independent(rows, [leaky])


def test_folds_depend_only_on_the_seed():
    rows = cremad_rows()

    def assignment(seed: int) -> List[List[int]]:
        return [fold.test_index.tolist() for fold in speaker_independent_folds(rows, seed=seed)]

    assert assignment(3) == assignment(3)
    assert assignment(3) != assignment(4)
