"""The key number of each stage's outputs, as the short text a progress line shows.

- training (DINO, AAM): the last epoch's loss (and validation EER when the run had one), read from
  the run's ``train_log.txt``;
- pseudo-labelling: NMI of the kept rows (when the manifest had labels to compare with), kept
  fraction and cluster count, from ``report.json``;
- verification: the EER of every system; emotion: the micro-F1 of every system.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

from speechbrain_dino.errors import PathLike

#: The file a training recipe's ``FileTrainLogger`` writes (``train_log`` in the training YAMLs).
TRAIN_LOG = "train_log.txt"
_LOGGED_NUMBER = re.compile(r"\b(train loss|valid EER): ([-+0-9.eE]+)")


def training_summary(training_folder: PathLike) -> str:
    """``"loss 4.44"`` (``", valid EER 31.2%"`` added) from the last epoch of ``train_log.txt``."""
    path = os.path.join(os.fspath(training_folder), TRAIN_LOG)
    if not os.path.isfile(path):
        return "no train_log.txt"
    with open(path, encoding="utf-8") as fin:
        lines = [line for line in fin if line.strip()]
    numbers = dict(_LOGGED_NUMBER.findall(lines[-1])) if lines else {}
    if "train loss" not in numbers:
        return "no epoch logged"
    text = f"loss {float(numbers['train loss']):.3f}"
    if "valid EER" in numbers:
        text += f", valid EER {float(numbers['valid EER']):.2f}%"
    return text


def pseudo_label_summary(report: Mapping[str, Any]) -> str:
    """``"NMI 0.812, kept 78.0%, 31 clusters"`` from a pseudo-labelling ``report.json``."""
    kept = (report.get("metrics") or {}).get("kept") or {}
    nmi = f"NMI {kept['nmi']:.3f}, " if "nmi" in kept else ""
    return f"{nmi}kept {100 * report['kept_fraction']:.1f}%, {report['clusters_after_filtering']} clusters"


def verification_summary(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """``"EER DINO 33.70%, mfcc_stats 23.02%"`` from :func:`~speechbrain_dino.pipeline.stages.read_verification`."""
    return "EER " + ", ".join(f"{system} {metrics['raw']['EER']:.2f}%" for system, metrics in results.items())


def emotion_summary(results: Mapping[str, Mapping[str, Any]]) -> str:
    """``"micro-F1 DINO 61.2%, ..."`` from :func:`~speechbrain_dino.pipeline.stages.read_emotion`."""
    return "micro-F1 " + ", ".join(f"{system} {values['micro_f1']:.2f}%" for system, values in results.items())
