"""The speaker bootstrap of the EER: weighted counts, trial weights, what the intervals say."""
from __future__ import annotations

import numpy as np
import pytest

from speechbrain_dino.errors import DataError
from speechbrain_dino.verification.bootstrap import (
    SpeakerBootstrap,
    TrialSpeakers,
    draw_counts,
    trial_weights,
    weighted_eers,
)
from speechbrain_dino.verification.evaluation import paired_eer_change
from speechbrain_dino.verification.metrics import equal_error_rate, error_counts
from speechbrain_dino.verification.trials import Trials, write_trials


def all_pairs(speakers: int, per_speaker: int):
    """Every pair of ``speakers`` x ``per_speaker`` utterances: ids, speaker map, trial sides, labels."""
    ids = [f"s{s}_u{u}" for s in range(speakers) for u in range(per_speaker)]
    speaker_of = {uid: uid.split("_")[0] for uid in ids}
    first, second = np.triu_indices(len(ids), 1)
    enrol, test = [ids[i] for i in first], [ids[j] for j in second]
    labels = np.array([speaker_of[a] == speaker_of[b] for a, b in zip(enrol, test)], dtype=np.int64)
    return TrialSpeakers.of(enrol, test, speaker_of), labels


def test_unit_weights_give_the_plain_eer_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 3000)
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # many tied scores
    plain = equal_error_rate(error_counts(scores, labels))[0]
    assert weighted_eers(scores, labels, np.ones((3, 3000))) == pytest.approx(np.full(3, plain))
    # integer weights = the trials repeated
    weights = rng.integers(0, 3, 3000)
    repeated = np.repeat(np.arange(3000), weights)
    expected = equal_error_rate(error_counts(scores[repeated], labels[repeated]))[0]
    assert weighted_eers(scores, labels, weights[None].astype(float))[0] == pytest.approx(expected)


def test_trial_weights_count_the_drawn_speakers():
    sides = TrialSpeakers.of(["a1", "a1", "b1"], ["a2", "b1", "c1"], {"a1": "A", "a2": "A", "b1": "B", "c1": "C"})
    assert sides.speakers == ("A", "B", "C")
    counts = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])  # draw 1: A twice, B once; draw 2: B three times
    # within A: c_A; A-B: c_A * c_B; B-C: c_B * c_C
    assert trial_weights(counts, sides).tolist() == [[2.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
    # draw 2 (speaker B alone) weights no trial here: its EER is undefined
    assert np.isnan(weighted_eers(np.array([0.9, 0.1, 0.2]), np.array([1, 0, 0]), trial_weights(counts, sides))[1])
    drawn = draw_counts(25, 200, seed=1)
    assert drawn.shape == (200, 25) and (drawn.sum(axis=1) == 25).all()
    with pytest.raises(KeyError, match="b9"):
        TrialSpeakers.of(["a1"], ["b9"], {"a1": "A"})


def test_a_set_of_unequal_speakers_gets_a_wide_interval_and_a_uniform_one_a_narrow_one():
    sides, labels = all_pairs(speakers=20, per_speaker=6)
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, len(labels))
    bootstrap = SpeakerBootstrap(labels, sides, draws=300)
    # uniform: every speaker equally hard
    uniform = bootstrap.interval(labels * 2.0 + noise)
    # unequal: half of the speakers' target trials are perfectly separated, half are chance
    easy = sides.enrol < 10
    unequal_scores = np.where(labels & easy, 10.0, noise)
    unequal = bootstrap.interval(unequal_scores)
    assert uniform.low <= uniform.value <= uniform.high and unequal.low <= unequal.value <= unequal.high
    assert (unequal.high - unequal.low) > 3 * (uniform.high - uniform.low)


def test_a_paired_comparison_sees_a_consistent_gain_that_separate_intervals_do_not():
    sides, labels = all_pairs(speakers=15, per_speaker=6)
    rng = np.random.default_rng(4)
    speaker_difficulty = rng.normal(0, 1.5, len(sides.speakers))[sides.enrol]  # shared by both systems
    base = labels * (2.0 + speaker_difficulty) + rng.normal(0, 1, len(labels))
    better = base + 0.4 * labels  # every target trial a bit higher: better for every speaker
    bootstrap = SpeakerBootstrap(labels, sides, draws=300)
    a, b = bootstrap.interval(base), bootstrap.interval(better)
    assert b.value < a.value and b.high > a.low  # the separate intervals overlap
    change = bootstrap.change(base, better)
    assert change.value == pytest.approx(100 * (b.value / a.value - 1))
    assert change.high < 0  # the paired interval excludes "no change"
    same = bootstrap.change(base, base)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)


def test_a_paired_change_reads_two_score_files_of_the_same_trials(tmp_path):
    sides, labels = all_pairs(speakers=8, per_speaker=4)
    names = [f"s{s}_u{u}" for s in range(8) for u in range(4)]
    speaker_of = {name: name.split("_")[0] for name in names}
    first, second = np.triu_indices(len(names), 1)
    trials = Trials(labels.astype(np.int8), first, second, names)
    rng = np.random.default_rng(5)
    base = labels * 1.5 + rng.normal(0, 1, len(labels))
    write_trials(trials, tmp_path / "a.txt", base)
    write_trials(trials, tmp_path / "b.txt", base + 0.5 * labels)
    change = paired_eer_change(tmp_path / "a.txt", tmp_path / "b.txt", speaker_of, draws=200)
    expected = SpeakerBootstrap(labels, sides, draws=200).change(np.round(base, 6), np.round(base + 0.5 * labels, 6))
    assert change == expected and change.value < 0
    write_trials(Trials(labels.astype(np.int8), second, first, names), tmp_path / "c.txt", base)  # sides swapped
    with pytest.raises(DataError, match="other trials"):
        paired_eer_change(tmp_path / "a.txt", tmp_path / "c.txt", speaker_of)
