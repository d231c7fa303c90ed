"""How far an EER moves with the speakers that happen to be in the test set: a speaker bootstrap.

The trials of a verification set are not independent: every trial of a speaker shares that
speaker's voice, so a set of 25 speakers gives a far noisier EER than its 31k trials suggest,
and resampling trials would hide that. Here the *speakers* are resampled (with replacement, as
many as the set has) and every trial is weighted by how often its speakers were drawn: ``c_a``
for a target trial of speaker ``a``, ``c_a * c_b`` for a non-target trial between ``a`` and
``b`` (the two-way bootstrap of Bolle, Ratha and Pankanti, 2004, "Error analysis of pattern
recognition systems: the subsets bootstrap"). The EER of each draw comes from weighted error
counts, all draws at once from one sort of the scores.

:meth:`SpeakerBootstrap.change` compares two systems scored on the same trials under the same draws, so
that the speakers both find hard cancel out: its interval for the relative EER change says
whether "B is 15% better than A" is more than the luck of the speaker draw.

Shapes: ``M`` trials, ``S`` speakers, ``B`` bootstrap draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Tuple

import numpy as np

from speechbrain_dino.verification.metrics import equal_error_rate, error_counts, score_order

#: Bootstrap draws per interval.
DRAWS = 1000
#: Central coverage of the reported intervals.
LEVEL = 0.95
#: Draws whose trial weights are held in memory at once ([chunk, M] float64).
CHUNK = 64


@dataclass(frozen=True)
class TrialSpeakers:
    """The speakers of each trial's two sides, as indices into ``speakers``.

    Attributes
    ----------
    enrol : np.ndarray [M] int64
    test : np.ndarray [M] int64
    speakers : tuple of the S speaker ids (sorted)
    """

    enrol: np.ndarray
    test: np.ndarray
    speakers: Tuple[str, ...]

    @classmethod
    def from_speakers(cls, enrol_speakers: Sequence[str], test_speakers: Sequence[str]) -> "TrialSpeakers":
        """From the speaker of every trial's enrolment side and test side [M]."""
        both = np.concatenate([np.asarray(enrol_speakers, dtype=str), np.asarray(test_speakers, dtype=str)])
        names, index = np.unique(both, return_inverse=True)
        count = len(enrol_speakers)
        return cls(index[:count].astype(np.int64), index[count:].astype(np.int64), tuple(names.tolist()))

    @classmethod
    def of(cls, enrol_ids: Sequence[str], test_ids: Sequence[str], speaker_of: Mapping[str, str]) -> "TrialSpeakers":
        """From the utterance ids of every trial's sides and each utterance's speaker.

        Raises ``KeyError`` naming the first utterance without a speaker.
        """
        missing = next((uid for uid in (*enrol_ids, *test_ids) if uid not in speaker_of), None)
        if missing is not None:
            raise KeyError(f"utterance {missing!r} of the trials has no speaker")
        return cls.from_speakers([speaker_of[uid] for uid in enrol_ids], [speaker_of[uid] for uid in test_ids])

    def reordered(self, order: np.ndarray) -> "TrialSpeakers":
        """The same speakers for the trials taken in ``order`` [M]."""
        return TrialSpeakers(self.enrol[order], self.test[order], self.speakers)


@dataclass(frozen=True)
class Interval:
    """A statistic and the central ``LEVEL`` interval of its bootstrap distribution."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def draw_counts(n_speakers: int, draws: int, seed: int) -> np.ndarray:
    """``[B, S]`` how often each speaker is drawn in each of ``draws`` resamplings of ``S`` speakers."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_speakers, np.full(n_speakers, 1.0 / n_speakers), size=draws).astype(np.float64)


def trial_weights(counts: np.ndarray, trial_speakers: TrialSpeakers) -> np.ndarray:
    """``[B, M]`` weights of the trials under speaker counts ``[B, S]``: ``c_a`` within a speaker,
    ``c_a * c_b`` across two."""
    enrol, test = counts[:, trial_speakers.enrol], counts[:, trial_speakers.test]
    same = trial_speakers.enrol == trial_speakers.test
    return np.where(same, enrol, enrol * test)


def _sorted_eers(is_target: np.ndarray, last_of_value: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[b]`` EERs (fractions) of trials in ascending score order under weights ``[b, M]`` in that
    order; NaN for a row without target or without non-target weight.

    The threshold is chosen as :func:`~speechbrain_dino.verification.metrics.equal_error_rate`
    chooses it: the lowest one minimising ``|P_fa - P_miss|``, compared exactly as the
    cross-multiplied weighted counts ``|FA * T - M * N|`` (integers held exactly in float64 while
    the products stay below 2**53, about 9e15), so tied scores pick the same threshold.
    """
    target_weight = np.where(is_target, weights, 0.0)
    missed = np.cumsum(target_weight, axis=1)[:, last_of_value]
    rejected_nontarget = np.cumsum(weights - target_weight, axis=1)[:, last_of_value]
    total_target, total_nontarget = missed[:, -1:], rejected_nontarget[:, -1:]
    false_alarms = total_nontarget - rejected_nontarget
    with np.errstate(divide="ignore", invalid="ignore"):
        p_miss = missed / total_target
        p_fa = false_alarms / total_nontarget
    best = np.argmin(np.abs(false_alarms * total_target - missed * total_nontarget), axis=1)
    rows = np.arange(len(weights))
    eers = (p_fa[rows, best] + p_miss[rows, best]) / 2
    eers[(total_target[:, 0] <= 0) | (total_nontarget[:, 0] <= 0)] = np.nan
    return eers


def weighted_eers(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[B]`` EERs (fractions) of one trial list under ``B`` weightings.

    Arguments
    ---------
    scores : np.ndarray [M], higher meaning more likely the same speaker
    labels : np.ndarray [M], 1 target / 0 non-target
    weights : np.ndarray [B, M] >= 0

    Returns
    -------
    np.ndarray [B]: per row, ``(P_fa + P_miss) / 2`` at the distinct score (accept above it)
    where the weighted rates are closest, as
    :func:`~speechbrain_dino.verification.metrics.equal_error_rate` does with unit weights; NaN
    for a row without target or without non-target weight.
    """
    order, last_of_value = score_order(scores)
    is_target = np.asarray(labels)[order].astype(bool)
    return _sorted_eers(is_target, last_of_value, np.asarray(weights, dtype=np.float64)[:, order])


def _central(values: np.ndarray, level: float) -> Tuple[float, float]:
    """The central ``level`` interval of the finite ``values``."""
    tail = (1.0 - level) / 2
    low, high = np.quantile(values[np.isfinite(values)], [tail, 1.0 - tail])
    return float(low), float(high)


class SpeakerBootstrap:
    """``draws`` resamplings of the speakers of one trial list, the same for every system scored
    on it (a paired comparison). Only the speaker counts [B, S] are kept; trial weights are
    built ``CHUNK`` draws at a time, so memory stays ``CHUNK x M`` for any trial list.

    Arguments
    ---------
    labels : np.ndarray [M], 1 target / 0 non-target
    trial_speakers : TrialSpeakers of the M trials
    draws : int
    seed : int
    """

    def __init__(self, labels: np.ndarray, trial_speakers: TrialSpeakers, draws: int = DRAWS, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.trial_speakers = trial_speakers
        self.counts = draw_counts(len(trial_speakers.speakers), draws, seed)

    def eers(self, scores: np.ndarray) -> Tuple[float, np.ndarray]:
        """The EER (percent) of ``scores`` [M], and under every draw [B] (NaN for a draw without
        target or without non-target trials, e.g. one speaker drawn every time).

        The point value is the reported EER itself
        (:func:`~speechbrain_dino.verification.metrics.verification_metrics`' function).
        """
        order, last_of_value = score_order(scores)
        is_target = self.labels[order].astype(bool)
        sides = self.trial_speakers.reordered(order)
        point = equal_error_rate(error_counts(scores, self.labels))[0]
        draws = np.concatenate([
            _sorted_eers(is_target, last_of_value, trial_weights(self.counts[start:start + CHUNK], sides))
            for start in range(0, len(self.counts), CHUNK)
        ])
        return 100 * point, 100 * draws

    def interval(self, scores: np.ndarray, level: float = LEVEL) -> Interval:
        """The EER (percent) and its central ``level`` interval."""
        return eer_interval(self.eers(scores), level)

    def change(self, scores_a: np.ndarray, scores_b: np.ndarray, level: float = LEVEL) -> Interval:
        """The relative EER change (percent; -15: 15% lower) of system B against system A."""
        return relative_change(self.eers(scores_a), self.eers(scores_b), level)


def eer_interval(eers: Tuple[float, np.ndarray], level: float = LEVEL) -> Interval:
    """An EER and its central ``level`` interval, from :meth:`SpeakerBootstrap.eers`."""
    return Interval(eers[0], *_central(eers[1], level))


def relative_change(eers_a: Tuple[float, np.ndarray], eers_b: Tuple[float, np.ndarray], level: float = LEVEL) -> Interval:
    """The relative EER change (percent) of B against A and its interval over the shared draws,
    from two :meth:`SpeakerBootstrap.eers` of one bootstrap (draws where A's EER is 0 left out)."""
    (point_a, draws_a), (point_b, draws_b) = eers_a, eers_b
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(draws_a > 0, draws_b / draws_a, np.nan)
    return Interval(100 * (point_b / point_a - 1), *_central(100 * (ratios - 1), level))
