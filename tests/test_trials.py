"""Trial lists: VoxCeleb-format reading with id resolution, writing, errors, and generation."""
from __future__ import annotations

import logging
import os
from itertools import combinations

import numpy as np
import pytest

from speechbrain_dino.errors import DataError
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import Trials, read_scores, read_trials, write_trials

KNOWN_IDS = [
    "id10270--x6uYqmx31kE--00001",
    "id10270--8jEAjG6SegY--00008",
    "id10300--ize_eiCFEg0--00003",
    "plain_utt",
]


def write_lines(tmp_path, lines, name="trials.txt"):
    path = os.path.join(tmp_path, name)
    with open(path, "w", encoding="utf-8") as fout:
        fout.write("\n".join(lines) + "\n")
    return path


def test_voxceleb_paths_resolve_to_manifest_ids(tmp_path):
    path = write_lines(
        tmp_path,
        [
            "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav",
            "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav",
            "",
            "target plain_utt id10270--8jEAjG6SegY--00008",
            "NONTARGET\tid10300/ize_eiCFEg0/00003.wav  plain_utt",
        ],
    )
    trials = read_trials(path, KNOWN_IDS)
    assert trials.labels.dtype == np.int8
    assert trials.labels.tolist() == [1, 0, 1, 0]
    assert trials.enrol.tolist() == [0, 0, 3, 2]
    assert trials.test.tolist() == [1, 2, 1, 3]
    assert trials.enrol_ids[0] == "id10270--x6uYqmx31kE--00001"
    assert len(trials) == 4


def test_write_then_read_round_trip_with_scores(tmp_path):
    trials = Trials(
        np.array([1, 0], np.int8), np.array([0, 2]), np.array([1, 3]), list(KNOWN_IDS)
    )
    path = os.path.join(tmp_path, "out", "trials.txt")
    write_trials(trials, path)
    again = read_trials(path, KNOWN_IDS)
    assert again.labels.tolist() == [1, 0]
    assert again.enrol.tolist() == [0, 2] and again.test.tolist() == [1, 3]
    score_path = os.path.join(tmp_path, "scores.txt")
    write_trials(trials, score_path, scores=np.array([0.75, -0.125]))
    with open(score_path, encoding="utf-8") as fin:
        lines = fin.read().splitlines()
    assert lines == [
        "1 id10270--x6uYqmx31kE--00001 id10270--8jEAjG6SegY--00008 0.75",
        "0 id10300--ize_eiCFEg0--00003 plain_utt -0.125",
    ]
    read_back, scores = read_scores(score_path)  # the ids in the order they appear
    assert read_back.enrol_ids == trials.enrol_ids and read_back.test_ids == trials.test_ids
    assert read_back.labels.tolist() == [1, 0] and scores.tolist() == [0.75, -0.125]
    with pytest.raises(ValueError):
        write_trials(trials, score_path, scores=np.zeros(3))


@pytest.mark.parametrize("bad_line, reason", [("1 a b", "4 fields"), ("1 a b high", "not a number"), ("y a b 0.1", "label")])
def test_a_malformed_score_line_names_file_and_line(tmp_path, bad_line, reason):
    path = write_lines(tmp_path, ["1 a b 0.5", bad_line])
    with pytest.raises(DataError) as error:
        read_scores(path)
    assert f"{path}, line 2" in str(error.value) and reason in str(error.value)


@pytest.mark.parametrize(
    "bad_line, reason",
    [("1 plain_utt", "3 fields"), ("1 a b c", "3 fields"), ("yes plain_utt plain_utt", "label")],
)
def test_malformed_row_names_file_and_line(tmp_path, bad_line, reason):
    path = write_lines(tmp_path, ["1 plain_utt id10270--8jEAjG6SegY--00008", bad_line])
    with pytest.raises(DataError) as error:
        read_trials(path, KNOWN_IDS)
    assert f"{path}, line 2" in str(error.value) and reason in str(error.value)


def test_unknown_ids_reported_once_with_count_and_lines(tmp_path):
    path = write_lines(
        tmp_path,
        [
            "1 plain_utt id10270--8jEAjG6SegY--00008",
            "0 plain_utt id99999/nope/00001.wav",
            "0 ghost_a ghost_b",
        ],
    )
    with pytest.raises(DataError) as error:
        read_trials(path, KNOWN_IDS)
    message = str(error.value)
    assert message.startswith(path)
    assert "3 trial id(s)" in message
    assert "line 2: 'id99999/nope/00001.wav'" in message and "line 3: 'ghost_a'" in message


def test_empty_or_missing_trial_file(tmp_path):
    path = write_lines(tmp_path, ["", "   "])
    with pytest.raises(DataError, match="no trials"):
        read_trials(path, KNOWN_IDS)
    with pytest.raises(DataError, match="not found"):
        read_trials(os.path.join(tmp_path, "absent.txt"), KNOWN_IDS)


def corpus_rows(speakers=6, per_speaker=8):
    """RAVDESS-like rows: ID encodes the sentence, emotion column, gender from the speaker."""
    rows = []
    for speaker in range(speakers):
        for utterance in range(per_speaker):
            rows.append(
                {
                    "ID": f"s{speaker}_sent{utterance % 2}_u{utterance}",
                    "spk_id": f"spk{speaker}",
                    "emotion": ["neutral", "happy", "sad", "angry"][utterance % 4],
                    "gender": "f" if speaker % 2 else "m",
                }
            )
    return rows


def sentence(row):
    return row["ID"].split("_")[1]


def gender(row):
    return row["gender"]


def pair_set(trials):
    return {(int(e), int(t)) for e, t in zip(trials.enrol, trials.test)}


def check_invariants(trials, rows):
    """No self pairs, no repeated unordered pair, labels equal to speaker identity."""
    assert (trials.enrol < trials.test).all()
    assert len(pair_set(trials)) == len(trials)
    same = [rows[e]["spk_id"] == rows[t]["spk_id"] for e, t in zip(trials.enrol, trials.test)]
    assert trials.labels.tolist() == [int(flag) for flag in same]


def test_generation_balanced_with_constraints_and_deterministic():
    rows = corpus_rows()
    options = dict(n_target=40, n_nontarget=40, cross=("emotion", sentence), same_field=gender)
    trials = generate_trials(rows, seed=3, **options)
    check_invariants(trials, rows)
    assert int(trials.labels.sum()) == 40 and len(trials) == 80
    for enrol, test, label in zip(trials.enrol, trials.test, trials.labels):
        if label:
            assert rows[enrol]["emotion"] != rows[test]["emotion"]
            assert sentence(rows[enrol]) != sentence(rows[test])
        else:
            assert rows[enrol]["gender"] == rows[test]["gender"]
    assert trials.ids == [row["ID"] for row in rows]
    again = generate_trials(rows, seed=3, **options)
    assert pair_set(again) == pair_set(trials) and (again.labels == trials.labels).all()
    assert pair_set(generate_trials(rows, seed=4, **options)) != pair_set(trials)


def brute_force_pairs(rows, target, test_pair):
    return {
        (i, j)
        for i, j in combinations(range(len(rows)), 2)
        if (rows[i]["spk_id"] == rows[j]["spk_id"]) == target and test_pair(rows[i], rows[j])
    }


def test_too_few_pairs_takes_all_and_logs(caplog):
    rows = corpus_rows()
    with caplog.at_level(logging.WARNING):
        trials = generate_trials(
            rows, 10_000, 10_000, cross=("emotion", sentence), same_field=gender
        )
    check_invariants(trials, rows)
    targets = brute_force_pairs(
        rows, True, lambda a, b: a["emotion"] != b["emotion"] and sentence(a) != sentence(b)
    )
    nontargets = brute_force_pairs(rows, False, lambda a, b: a["gender"] == b["gender"])
    assert pair_set(trials) == targets | nontargets
    assert "valid target pairs" in caplog.text and "valid non-target pairs" in caplog.text


def test_all_pairs_mode():
    rows = corpus_rows(speakers=4, per_speaker=5)
    trials = generate_trials(rows)
    check_invariants(trials, rows)
    assert len(trials) == 20 * 19 // 2
    assert int(trials.labels.sum()) == 4 * (5 * 4 // 2)


def test_generation_needs_speakers_and_known_columns():
    rows = corpus_rows(speakers=2, per_speaker=2)
    rows[0]["spk_id"] = ""
    with pytest.raises(DataError, match="spk_id"):
        generate_trials(rows, 1, 1)
    with pytest.raises(DataError, match="accent"):
        generate_trials(corpus_rows(speakers=2, per_speaker=2), 1, 1, cross=("accent",))
    with pytest.raises(DataError, match="no rows"):
        generate_trials([], 1, 1)


def test_make_trials_cli_writes_and_never_overwrites(tmp_path):
    from speechbrain_dino.data.manifest import write_manifest
    from speechbrain_dino.verification.make_trials import main as make_trials

    rows = [
        {"ID": f"s{s}_u{u}", "duration": 1.0, "wav": f"/x/s{s}_u{u}.wav", "spk_id": f"s{s}", "emotion": f"e{u % 2}"}
        for s in range(3) for u in range(4)
    ]
    write_manifest(rows, tmp_path / "m.csv")
    out = tmp_path / "trials.txt"
    args = ["--manifest", str(tmp_path / "m.csv"), "--output", str(out), "--cross", "emotion"]
    assert make_trials(args) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 * 4 + 48  # 4 cross-emotion pairs per speaker + 66 - 18 non-target pairs
    assert make_trials(args) == 2 and out.read_text().splitlines() == lines
    assert make_trials([*args, "--overwrite", "--n_target", "2", "--n_nontarget", "2"]) == 0
    assert len(out.read_text().splitlines()) == 4


def test_a_trial_list_with_one_kind_of_trial_is_refused(tmp_path):
    from speechbrain_dino.errors import DataError
    from speechbrain_dino.verification.trials import read_trials

    path = tmp_path / "targets_only.txt"
    path.write_text("1 a b\n1 a c\n")
    with pytest.raises(DataError, match="all 2 trials are target"):
        read_trials(path, ["a", "b", "c"])
