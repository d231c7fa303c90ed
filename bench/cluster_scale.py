"""How clustering scales: k-means into many clusters and the whole pseudo-label pipeline.

Synthetic embeddings: N x dim around unit speaker centres (cosine to centre ~0.75, like the tests).
Each measurement runs in a freshly spawned process that first generates the data, so its peak
RSS (``VmHWM``, see speechbrain_dino/pipeline/memory.py) is that measurement's own; the data's share is
reported beside it. Spawned, not forked: a child forked after the parent ran torch inherits a
dead OpenMP thread pool, and faiss's BLAS then spins forever waiting for it.

    python -m bench.cluster_scale --n 100000                  # k-means faiss vs sklearn + pipeline
    python -m bench.cluster_scale --n 1000000 --backends faiss --pipeline-backends \
        --agglomerate-backends faiss                           # k-means, AHC of 250k centroids

Results are appended to bench/results/cluster_scale.md.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, List, Tuple

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from bench.common import RESULTS
from speechbrain_dino.pipeline.memory import own_peak_rss_gb
from speechbrain_dino.pseudo_labels.clustering import agglomerate, kmeans
from speechbrain_dino.pseudo_labels.config import PseudoLabelConfig
from speechbrain_dino.pseudo_labels.labelling import pseudo_label
from speechbrain_dino.pseudo_labels.metrics import purity


def planted_embeddings(
    n: int, dim: int, speakers: int, cosine: float = 0.75, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """Embeddings [n, dim] float32 around ``speakers`` unit centres (expected cosine to the
    centre ``cosine``), and speaker labels [n]."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((speakers, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    speaker = rng.integers(0, speakers, n)
    noise = np.sqrt((1 / cosine ** 2 - 1) / dim)
    x = centres[speaker]
    x += noise * rng.standard_normal((n, dim), dtype=np.float32)
    return x, speaker


def measure(stage: str, backend: str, args: argparse.Namespace) -> Dict:
    """Runs one stage on fresh data in this (spawned) process: seconds, memory, quality."""
    if stage == "agglomerate":  # stand-ins for N/4 k-means centroids of 4 utterances each
        x, speaker = planted_embeddings(args.n // 4, args.dim, args.speakers, cosine=0.915)
    else:
        x, speaker = planted_embeddings(args.n, args.dim, args.speakers)
    data_gb = own_peak_rss_gb()
    start = time.perf_counter()
    if stage == "agglomerate":
        labels = agglomerate(x, args.threshold)
        quality = {"nmi": round(normalized_mutual_info_score(speaker, labels), 4)}
        detail = f"C={len(x)} -> {labels.max() + 1} clusters"
    elif stage == "kmeans":
        _, assignments = kmeans(x, args.clusters, backend, args.kmeans_iter, seed=0)
        quality = {"purity": round(purity(speaker, assignments), 4)}
        detail = f"{args.clusters} clusters"
    else:
        config = PseudoLabelConfig(backend=backend, kmeans_iter=args.kmeans_iter,
                                   ahc_threshold=args.threshold)
        report = pseudo_label(x, config, seed=0, true_labels=speaker).report
        quality = {key: round(value, 4) for key, value in
                   report["metrics"]["before_filtering"].items() if key != "rows"}
        detail = (f"C={report['kmeans_clusters']} -> {report['clusters_before_filtering']} "
                  f"clusters, kept {report['kept_fraction']:.2f}; s: {report['seconds']}")
    return {"stage": stage, "backend": backend, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_gb": round(own_peak_rss_gb(), 2), "data_rss_gb": round(data_gb, 2),
            "quality": quality, "detail": detail}


def in_fresh_process(stage: str, backend: str, args: argparse.Namespace) -> Dict:
    """:func:`measure` in a new spawned process (so its peak memory is the stage's own)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, stage, backend, args).result()


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by ``bench.run_all``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="embeddings")
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--speakers", type=int, default=None, help="default n / 100")
    parser.add_argument("--clusters", type=int, default=10_000, help="k-means benchmark size")
    parser.add_argument("--kmeans-iter", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.6, help="pipeline AHC cosine")
    parser.add_argument("--backends", nargs="*", default=["faiss", "sklearn"], help="k-means")
    parser.add_argument("--pipeline-backends", nargs="*", default=["faiss"])
    parser.add_argument("--agglomerate-backends", nargs="*", default=[],
                        help="also agglomerate N/4 centroid stand-ins directly")
    parser.add_argument("--out", default=os.path.join(RESULTS, "cluster_scale.md"))
    return parser


def measure_all(args: argparse.Namespace) -> List[str]:
    """Every requested measurement, each in a fresh process; returns the Markdown lines."""
    args.speakers = args.speakers or max(1, args.n // 100)
    rows = [in_fresh_process("kmeans", backend, args) for backend in args.backends]
    rows += [in_fresh_process("pipeline", backend, args) for backend in args.pipeline_backends]
    rows += [in_fresh_process("agglomerate", backend, args)
             for backend in args.agglomerate_backends]
    lines = [
        f"\n**N={args.n:,} dim={args.dim} speakers={args.speakers:,} k-means iter={args.kmeans_iter}**"
        f" ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, {platform.machine()},"
        f" load avg {os.getloadavg()[0]:.1f})\n",
        "| stage | backend | seconds | peak RSS GB (data) | quality | detail |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['stage']} | {r['backend']} | {r['seconds']} | {r['peak_rss_gb']} "
              f"({r['data_rss_gb']}) | {r['quality']} | {r['detail']} |" for r in rows]
    kmeans_seconds = {r["backend"]: r["seconds"] for r in rows if r["stage"] == "kmeans"}
    if {"faiss", "sklearn"} <= set(kmeans_seconds):
        lines.append(f"\nk-means, scikit-learn / faiss wall time: "
                     f"{kmeans_seconds['sklearn'] / kmeans_seconds['faiss']:.2f}")
    return lines


def main() -> None:
    args = build_parser().parse_args()
    lines = measure_all(args)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as fout:
        fout.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
