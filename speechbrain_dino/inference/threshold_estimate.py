"""A decision threshold without held-out labels: the EER point of pairs within and across clusters.

A verification decision needs a cosine threshold, and the threshold depends on the encoder (these
embeddings score different speakers around 0.8 after a short run, far above SpeechBrain's default
0.25). Labelled validation trials give the threshold at their EER point; a label-free run has none.
Clusters stand in for the labels: draw up to :data:`MAX_CLUSTERS` clusters and up to
:data:`MEMBERS_PER_CLUSTER` members of each, embed them, score every pair by cosine (a target
when both members are in one cluster) and take the threshold at the EER point of those trials.

It is made in two places:

- AAM fine-tuning without validation trials (a pseudo-label round) estimates it at export from
  its own training clusters, embedded by the fine-tuned encoder (:class:`ClusterThresholdEstimator`),
  and the export records it as ``estimated_from_training_clusters``
  (:mod:`speechbrain_dino.inference.export`). Those members were trained on, and their clusters were formed
  by the previous encoder, so the estimate can sit away from a held-out EER threshold: how far, on
  which data, is measured in ``BENCHMARKS.md`` ("Using a trained encoder").
- ``sbdino-cluster`` estimates it from the clusters it finds in a folder (:func:`cluster_threshold`).

The draw has its own seeded generator: the global random state is untouched, so adding the
estimate to a run changes none of its other numbers.

Shapes: ``N`` rows (utterances), ``D`` embedding dimensions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch

from speechbrain_dino.data.manifest import Row
from speechbrain_dino.inference.export import DecisionThreshold
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import Trials
from speechbrain_dino.verification.validation import TrialValidator, eer_point

#: Clusters drawn for the estimate (uniformly among all).
MAX_CLUSTERS = 200
#: Members drawn from each cluster (all of a smaller one).
MEMBERS_PER_CLUSTER = 8
#: Where a fine-tuning's estimate comes from (a key of :data:`speechbrain_dino.inference.export.THRESHOLD_SOURCES`).
ESTIMATE_SOURCE = "estimated_from_training_clusters"


@dataclass(frozen=True)
class ClusterThreshold:
    """A threshold estimated from clusters, and what it was estimated on.

    Attributes
    ----------
    value : float, the cosine at the EER point (accept a pair scoring above it).
    eer_percent : float, the EER of the same- against different-cluster pairs there.
    clusters, utterances : int, drawn for the estimate.
    target_trials, nontarget_trials : int, same-cluster and different-cluster pairs scored.
    """

    value: float
    eer_percent: float
    clusters: int
    utterances: int
    target_trials: int
    nontarget_trials: int

    def details(self) -> Dict[str, float]:
        """The fields other than ``value`` (for JSON)."""
        fields = asdict(self)
        fields.pop("value")
        return fields


def draw_members(
    clusters: Sequence[str], seed: int = 0, max_clusters: int = MAX_CLUSTERS, members: int = MEMBERS_PER_CLUSTER
) -> np.ndarray:
    """Indices of the rows drawn for an estimate: up to ``max_clusters`` clusters, uniformly, and up
    to ``members`` rows of each, sorted; ``clusters`` is ``[N]`` cluster names (e.g. ``spk_id``)."""
    rng = np.random.default_rng(seed)
    names, codes = np.unique(np.asarray(clusters), return_inverse=True)
    chosen = np.sort(rng.choice(len(names), size=min(max_clusters, len(names)), replace=False))
    drawn: List[np.ndarray] = []
    for code in chosen:
        rows = np.flatnonzero(codes == code)
        drawn.append(rng.choice(rows, size=min(members, len(rows)), replace=False))
    return np.sort(np.concatenate(drawn))


def _estimate(vectors: np.ndarray, clusters: Sequence[str], trials: Trials) -> ClusterThreshold:
    """The EER point of ``trials`` over the drawn members' ``vectors`` ``[n, D]`` and ``[n]`` clusters."""
    eer, value = eer_point(vectors, trials)
    n_target = int(trials.labels.sum())
    return ClusterThreshold(
        value=float(value), eer_percent=100 * float(eer), clusters=len(set(clusters)), utterances=len(clusters),
        target_trials=n_target, nontarget_trials=len(trials) - n_target,
    )


def cluster_threshold(vectors: np.ndarray, clusters: Sequence[str], seed: int = 0) -> ClusterThreshold:
    """The estimate of the module docstring from embeddings ``[N, D]`` and their ``[N]`` clusters.

    Raises
    ------
    DataError
        The drawn members give no same-cluster pair (every cluster a singleton) or no
        different-cluster pair (one cluster).
    """
    indices = draw_members(clusters, seed)
    drawn = [str(clusters[index]) for index in indices]
    trials = generate_trials([{"ID": str(position), "spk_id": cluster} for position, cluster in enumerate(drawn)])
    return _estimate(np.asarray(vectors)[indices], drawn, trials)


class ClusterThresholdEstimator:
    """The estimate of a fine-tuning's export, from its (pseudo-)labelled training rows.

    Built before training (the draw is made then, from its own generator); :meth:`decision_threshold`
    embeds the drawn rows with the modules it is given (the fine-tuned encoder) at export.

    Arguments
    ---------
    rows : sequence of dict
        The fine-tuning's rows (``ID``, ``duration``, ``wav``, ``spk_id`` = cluster).
    seed : int
        Seed of the draw.
    options
        Extraction options of :class:`~speechbrain_dino.verification.validation.TrialValidator`
        (``sample_rate``, ``resample``...).
    """

    def __init__(self, rows: Sequence[Row], seed: int = 0, **options) -> None:
        drawn = [rows[index] for index in draw_members([row["spk_id"] for row in rows], seed)]
        self.clusters = [row["spk_id"] for row in drawn]
        self.validator = TrialValidator(drawn, generate_trials(drawn), **options)

    def decision_threshold(self, modules: Mapping[str, torch.nn.Module], device: torch.device) -> DecisionThreshold:
        """The estimate by ``modules``, recorded as :data:`ESTIMATE_SOURCE` with its details."""
        estimate = _estimate(self.validator.embed(modules, device), self.clusters, self.validator.trials)
        return DecisionThreshold(estimate.value, ESTIMATE_SOURCE, estimate.details())
