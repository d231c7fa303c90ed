"""2-D maps of embeddings: t-SNE in cosine geometry, points coloured by a labelling.

Used by ``sbdino-cluster`` (coloured by cluster, and by speaker when known) and by the study's
figures (``bench/study_figures.py``). Drawing needs matplotlib (the ``plots`` extra).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from speechbrain_dino.errors import PathLike
from speechbrain_dino.pseudo_labels.clustering import l2_normalize

logger = logging.getLogger(__name__)

#: t-SNE perplexity (lowered for small sets: it must stay below the number of points).
PERPLEXITY = 30.0
#: Labellings with more values than this are drawn without a legend.
MAX_LEGEND_ENTRIES = 25
#: The fewest points a map is drawn for.
MIN_POINTS = 4


def map_points(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE (cosine metric, PCA initialisation of the unit rows) of ``[N, D]`` embeddings -> ``[N, 2]``."""
    from sklearn.manifold import TSNE

    perplexity = min(PERPLEXITY, (len(vectors) - 1) / 3)
    return TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
                random_state=seed).fit_transform(l2_normalize(np.asarray(vectors, dtype=np.float32)))


def draw_points(axes: Any, points: np.ndarray, labels: Sequence, title: str) -> None:
    """Scatters ``[N, 2]`` points on matplotlib ``axes``, one colour per value of ``[N]`` labels
    (sorted), with a legend when there are at most :data:`MAX_LEGEND_ENTRIES` values."""
    labels = np.asarray([str(label) for label in labels])
    values = sorted(set(labels.tolist()))
    for colour, value in enumerate(values):
        chosen = labels == value
        axes.scatter(points[chosen, 0], points[chosen, 1], s=8, color=f"C{colour % 10}", label=value)
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    if len(values) <= MAX_LEGEND_ENTRIES:
        axes.legend(fontsize=6, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def plot_embedding_map(
    vectors: np.ndarray, labellings: Mapping[str, Sequence], path: PathLike, seed: int = 0
) -> Optional[str]:
    """One t-SNE map of ``[N, D]`` embeddings, a panel per labelling (``{title: [N] labels}``).

    Returns
    -------
    str or None
        ``path``, or None (logged) without matplotlib or with fewer than :data:`MIN_POINTS` points.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning("no embedding map: matplotlib is missing (pip install speechbrain-dino[plots])")
        return None
    if len(vectors) < MIN_POINTS:
        logger.warning("no embedding map for fewer than %d files", MIN_POINTS)
        return None
    points = map_points(vectors, seed)
    figure = Figure(figsize=(5.5 * len(labellings), 4.6))
    for index, (title, labels) in enumerate(labellings.items()):
        draw_points(figure.add_subplot(1, len(labellings), index + 1), points, labels, title)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    return path
