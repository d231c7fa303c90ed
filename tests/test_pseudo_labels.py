"""Pseudo-labelling: planted speakers are recovered, filters do what they say, metrics are right,
nothing quadratic in memory, same seed same labels."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from speechbrain_dino.errors import DataError
from speechbrain_dino.pseudo_labels.clustering import agglomerate, faiss_available, kmeans
from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig
from speechbrain_dino.pseudo_labels.labelling import pseudo_label
from speechbrain_dino.pseudo_labels.metrics import cluster_metrics, purity
from speechbrain_dino.pseudo_labels.outputs import relabel_rows

SPEAKERS, PER_SPEAKER, DIM = 40, 30, 64
#: Threshold for the planted data below: same-speaker centroid cosines are ~0.85, different
#: speakers' ~0 (random directions in 64-D); real embeddings need their own value.
PLANTED_THRESHOLD = 0.5


def planted(seed: int = 0, speakers: int = SPEAKERS, per_speaker: int = PER_SPEAKER,
            dim: int = DIM, noise: float = 0.11):
    """Embeddings [S*U, dim] around unit speaker centres (cosine to centre ~0.75), labels [S*U]."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((speakers, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    speaker = np.repeat(np.arange(speakers), per_speaker)
    x = centres[speaker] + noise * rng.standard_normal((len(speaker), dim))
    return x.astype(np.float32), speaker


def planted_config(**changes) -> PseudoLabelConfig:
    """Config for :func:`planted`; filters off unless changed."""
    options = dict(ahc_threshold=PLANTED_THRESHOLD, min_size=1, max_size=None)
    options.update(changes)
    return PseudoLabelConfig(**options)


def test_planted_data_has_the_intended_difficulty():
    x, speaker = planted()
    centres = np.stack([x[speaker == s].mean(0) for s in range(SPEAKERS)])
    cosine = np.sum(x * centres[speaker], 1) / (
        np.linalg.norm(x, axis=1) * np.linalg.norm(centres[speaker], axis=1))
    assert 0.7 < cosine.mean() < 0.8


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_recovers_planted_speakers_without_knowing_their_number(backend):
    if backend == "faiss" and not faiss_available():
        pytest.skip("faiss not installed")
    x, speaker = planted()
    result = pseudo_label(x, planted_config(backend=backend), seed=0, true_labels=speaker)
    assert np.all(result.labels >= 0)
    assert abs(result.report["clusters_after_filtering"] - SPEAKERS) <= 2
    assert normalized_mutual_info_score(speaker, result.labels) > 0.9
    assert result.report["metrics"]["kept"]["nmi"] > 0.9
    assert 0.9 * 0.25 * len(x) <= result.report["kmeans_clusters"] <= 0.25 * len(x)


def test_agglomeration_stops_at_the_threshold():
    x, speaker = planted(speakers=10, per_speaker=3, noise=0.02)
    assert normalized_mutual_info_score(speaker, agglomerate(x, 0.9)) == pytest.approx(1.0)
    assert len(np.unique(agglomerate(x, 0.9999))) == len(x)
    assert len(np.unique(agglomerate(x, -1.0, knn=len(x)))) == 1


def test_agglomeration_linkage_is_the_weighted_average_cosine():
    # b and c (10 degrees apart) merge first; a is 30 degrees from b and 40 from c, so the
    # linkage of {a} to {b, c} is the weighted mean of cos 30 = 0.866 and cos 40 = 0.766.
    angle = np.deg2rad([-30.0, 0.0, 10.0])
    points = np.stack([np.cos(angle), np.sin(angle)], 1)

    def groups(weights):
        return len(np.unique(agglomerate(points, 0.8, np.array(weights), knn=2)))

    assert groups([1.0, 1.0, 1.0]) == 1  # (0.866 + 0.766) / 2 = 0.816
    assert groups([1.0, 1.0, 10.0]) == 2  # (0.866 + 10 * 0.766) / 11 = 0.775
    assert groups([1.0, 10.0, 1.0]) == 1  # (10 * 0.866 + 0.766) / 11 = 0.857


def test_faiss_and_sklearn_kmeans_agree():
    if not faiss_available():
        pytest.skip("faiss not installed")
    x, _ = planted()
    faiss_centroids, faiss_labels = kmeans(x, SPEAKERS, "faiss", n_iter=20, seed=0)
    sk_centroids, sk_labels = kmeans(x, SPEAKERS, "sklearn", n_iter=20, seed=0)
    assert faiss_centroids.shape == sk_centroids.shape == (SPEAKERS, DIM)
    assert faiss_labels.shape == sk_labels.shape == (len(x),)
    np.testing.assert_allclose(np.linalg.norm(sk_centroids, axis=1), 1.0, rtol=1e-5)
    assert normalized_mutual_info_score(faiss_labels, sk_labels) > 0.9


def test_filters_keep_the_requested_fraction_and_respect_sizes():
    x, speaker = planted()
    for fraction in (0.3, 0.5, 0.7):
        config = planted_config(keep_fraction=fraction, min_size=8, max_size=25)
        result = pseudo_label(x, config, seed=0, true_labels=speaker)
        kept = result.labels >= 0
        sizes = np.bincount(result.labels[kept])
        assert abs(kept.mean() - fraction) < 0.05, fraction
        assert result.report["kept_fraction"] == pytest.approx(kept.mean())
        assert sizes.min() >= 8 and sizes.max() <= 25
        assert result.report["clusters_after_filtering"] == len(sizes)
    # without a target, max_size subsamples (never drops) 30-member clusters to 25
    result = pseudo_label(x, planted_config(min_size=8, max_size=25), seed=0)
    assert result.report["kept"] == 25 * result.report["clusters_after_filtering"]


def test_member_filters_drop_the_least_central_members():
    x, speaker = planted()
    base = pseudo_label(x, planted_config(), seed=0, true_labels=speaker)
    quantile = pseudo_label(x, planted_config(member_quantile=0.2), seed=0)
    assert quantile.report["kept_fraction"] == pytest.approx(0.8, abs=0.03)
    strict = pseudo_label(x, planted_config(min_score=0.99), seed=0)
    assert strict.report["kept"] == 0 and strict.report["clusters_after_filtering"] == 0
    assert base.report["clusters_before_filtering"] == quantile.report["clusters_before_filtering"]


def test_purity_and_nmi_match_hand_computation():
    truth = ["a", "a", "a", "b", "b", "b"]
    clusters = [0, 0, 1, 1, 1, 1]
    assert purity(truth, clusters) == pytest.approx((2 + 3) / 6)
    contingency = np.array([[2, 1], [0, 3]]) / 6  # rows: truth a, b; columns: cluster 0, 1
    p_true, p_cluster = contingency.sum(1), contingency.sum(0)
    mutual = sum(p * math.log(p / (p_true[i] * p_cluster[j]))
                 for (i, j), p in np.ndenumerate(contingency) if p > 0)
    entropy = lambda p: -sum(q * math.log(q) for q in p if q > 0)  # noqa: E731
    nmi = mutual / ((entropy(p_true) + entropy(p_cluster)) / 2)
    metrics = cluster_metrics(truth, clusters)
    assert metrics["nmi"] == pytest.approx(nmi)
    assert metrics["purity"] == pytest.approx(5 / 6) and metrics["rows"] == 6
    assert purity([1, 2, 3], [7, 7, 7]) == pytest.approx(1 / 3)


def test_report_metrics_are_those_of_kept_and_of_all_rows():
    x, speaker = planted()
    result = pseudo_label(x, planted_config(keep_fraction=0.5, min_size=8), seed=0,
                          true_labels=[f"spk{s}" for s in speaker])
    kept = result.labels >= 0
    assert result.report["metrics"]["kept"] == cluster_metrics(speaker[kept], result.labels[kept])
    assert result.report["metrics"]["before_filtering"]["rows"] == len(x)
    json.dumps(result.report)


def test_same_seed_same_labels():
    x, _ = planted()
    for backend in ["sklearn"] + (["faiss"] if faiss_available() else []):
        config = planted_config(backend=backend, keep_fraction=0.6, min_size=8)
        first, second = (pseudo_label(x, config, seed=3).labels for _ in range(2))
        np.testing.assert_array_equal(first, second)


def test_bad_input_raises_data_error():
    x, _ = planted()
    with pytest.raises(DataError, match="shape"):
        pseudo_label(x[0])
    with pytest.raises(DataError, match="NaN"):
        pseudo_label(np.full((4, 3), np.nan))
    with pytest.raises(DataError, match="kmeans_ratio"):
        pseudo_label(x, PseudoLabelConfig(kmeans_ratio=2.0))
    with pytest.raises(DataError, match="true_labels"):
        pseudo_label(x, planted_config(), true_labels=[0, 1])


def test_relabel_rows_writes_cluster_ids_and_keeps_true_speakers():
    rows = [{"ID": f"u{i}", "duration": "1.0", "wav": f"/a/{i}.wav", "spk_id": s}
            for i, s in enumerate(["x", "x", "", "y"])]
    out = relabel_rows(rows, ["u3", "u2", "u1", "u0"], np.array([4, 0, -1, 4]))
    assert [row["ID"] for row in out] == ["u0", "u2", "u3"]
    assert [row["spk_id"] for row in out] == ["pl00004", "pl00000", "pl00004"]
    assert [row["true_spk_id"] for row in out] == ["x", "", "y"]
    assert rows[0]["spk_id"] == "x"  # input untouched
    again = relabel_rows(out, ["u0", "u2", "u3"], np.array([1, 2, 3]))
    assert [row["true_spk_id"] for row in again] == ["x", "", "y"]
    with pytest.raises(DataError, match="u0"):
        relabel_rows(rows, ["u1", "u2", "u3"], np.zeros(3, dtype=int))


def test_no_quadratic_memory():
    """25k rows: an N x N float32 matrix needs 2.5 GB; the child's address space is capped at
    1.5 GB (it peaks near 0.7 GB single-threaded), for both the pipeline and a direct
    agglomeration of 25k centroids."""
    script = textwrap.dedent("""
        import resource
        limit = 3 * 2 ** 29
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        import numpy as np
        from speechbrain_dino.pseudo_labels.clustering import agglomerate
        from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig
        from speechbrain_dino.pseudo_labels.labelling import pseudo_label
        rng = np.random.default_rng(0)
        n = 25_000
        speaker = np.arange(n) // 25
        x = rng.standard_normal((n // 25, 16)).astype(np.float32)[speaker]
        x += 0.3 * rng.standard_normal(x.shape).astype(np.float32)
        try:
            np.ones((n, n), dtype=np.float32)
            raise SystemExit("the limit does not bite")
        except MemoryError:
            pass
        assert len(agglomerate(x, 0.9, knn=5)) == n
        config = PseudoLabelConfig(ahc_threshold=0.7, kmeans_iter=5, min_size=2)
        result = pseudo_label(x, config, true_labels=speaker)
        assert result.report["metrics"]["before_filtering"]["nmi"] > 0.9, result.report
        print("ok")
    """)
    single_thread = {name: "1" for name in
                     ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **single_thread})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
