"""The studies' figures: DET curves of every system on one plot, 2-D maps of embeddings, and
cluster-size histograms against the true speakers."""
from __future__ import annotations

import os
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from speechbrain_dino.data.manifest import Row
from speechbrain_dino.inference.embedding_map import draw_points, map_points
from speechbrain_dino.inference.embeddings import EmbeddingTable
from speechbrain_dino.verification.metrics import plot_det


def read_score_file(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``label enrol test score`` lines -> (scores [M] float, labels [M] int)."""
    columns = np.loadtxt(path, dtype=str, ndmin=2)
    return columns[:, 3].astype(np.float64), columns[:, 0].astype(np.int64)


def det_figure(score_files: Mapping[str, str], path: str, title: str) -> str:
    """One DET plot with a curve per system (``{name: score file}``); returns ``path``."""
    plot_det({name: read_score_file(score_path) for name, score_path in score_files.items()}, path, title)
    return path


def embedding_map(
    tables: Mapping[str, EmbeddingTable], rows: Sequence[Row], path: str, seed: int = 0
) -> str:
    """t-SNE of each system's embeddings (cosine), one row of panels per system, coloured by
    speaker (left) and by emotion (right); returns ``path``.

    Arguments
    ---------
    tables : mapping
        ``{system: EmbeddingTable}`` whose ids include every row of ``rows``.
    rows : sequence of dict
        ``[N]`` manifest rows with ``spk_id`` and ``emotion``.
    """
    ids = [row["ID"] for row in rows]
    fields = (("spk_id", "speaker"), ("emotion", "emotion"))
    figure = Figure(figsize=(11, 4.6 * len(tables)))
    for index, (system, table) in enumerate(tables.items()):
        points = map_points(table.subset(ids), seed)
        for column, (field, label) in enumerate(fields):
            axes = figure.add_subplot(len(tables), 2, 2 * index + column + 1)
            draw_points(axes, points, [row[field] for row in rows], f"{system}: coloured by {label}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    return path


def size_panels(panels: Dict[str, Dict[str, np.ndarray]], true_sizes: np.ndarray, true_label: str, path: str) -> str:
    """One histogram panel per title of ``panels`` (label -> cluster sizes [K]), each against the
    true speakers' utterance counts ``true_sizes`` [S]; saved to ``path``."""
    figure = Figure(figsize=(max(6, 5 * len(panels)), 3.6))
    bins = np.arange(0, max(62, true_sizes.max() + 2), 2)
    for index, (title, named_sizes) in enumerate(panels.items()):
        axes = figure.add_subplot(1, len(panels), index + 1)
        axes.hist(true_sizes, bins=bins, histtype="step", color="k", linewidth=2, label=true_label)
        for name, sizes in named_sizes.items():
            axes.hist(sizes, bins=bins, histtype="step", linewidth=1.5, label=name)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("members per cluster")
        axes.set_ylabel("clusters")
        axes.legend(fontsize=7)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path
