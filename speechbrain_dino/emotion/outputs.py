"""What an emotion evaluation writes: ``results.json`` and a confusion-matrix plot per system."""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, Optional

import numpy as np

from speechbrain_dino.emotion.evaluation import EmotionResults
from speechbrain_dino.errors import PathLike

logger = logging.getLogger(__name__)


def plot_confusion(results: EmotionResults, path: PathLike) -> Optional[str]:
    """Writes the summed confusion matrix as a PNG: colours row-normalised (recall), cells
    annotated with counts. Returns the path, or ``None`` (with a logged note) without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed; no confusion-matrix plot written")
        return None
    counts = results.confusion
    recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = results.label_names
    size = 1.5 + 0.7 * len(names)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if recall[row, column] > 0.5 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    axes.set(
        xticks=range(len(names)),
        yticks=range(len(names)),
        xlabel="predicted",
        ylabel="true",
        title=f"{results.classifier}, micro-F1 {results.mean('micro_f1'):.1f}%",
    )
    axes.set_xticklabels(names, rotation=45, ha="right")
    axes.set_yticklabels(names)
    figure.colorbar(image, ax=axes, label="recall")
    figure.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_outputs(results: Dict[str, EmotionResults], output_folder: PathLike, main: str) -> Dict:
    """Writes ``confusion_<system>.png`` per system and ``results.json``; returns the JSON dict.

    ``results.json`` holds the main system's :meth:`EmotionResults.to_dict` at top level
    (``micro_f1`` in percent, mean over folds, per-fold values, ``macro_f1``, ``ua``...) and every
    other system's under ``"baselines"``.
    """
    folder = os.fspath(output_folder)
    os.makedirs(folder, exist_ok=True)
    for system, result in results.items():
        plot_confusion(result, os.path.join(folder, f"confusion_{system}.png"))
    summary: Dict = results[main].to_dict()
    summary["baselines"] = {system: result.to_dict() for system, result in results.items() if system != main}
    with open(os.path.join(folder, "results.json"), "w", encoding="utf-8") as fout:
        json.dump(summary, fout, indent=2)
    return summary
