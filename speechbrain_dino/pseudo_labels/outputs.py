"""What pseudo-labelling writes into its folder: the relabelled manifest and the JSON report.

``pseudo_labels.csv`` has the manifest format with ``spk_id`` set to cluster ids (rows dropped by
the filters absent) and any original label kept as ``true_spk_id``; ``report.json`` is the
:func:`~speechbrain_dino.pseudo_labels.labelling.pseudo_label` report (clusters, kept fraction,
sizes, and NMI / ARI / purity against the original labels when the manifest had them).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from speechbrain_dino.data.manifest import Row, write_manifest
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.pseudo_labels.labelling import PseudoLabels

LABELS_FILE = "pseudo_labels.csv"
REPORT_FILE = "report.json"


def labels_path(folder: PathLike) -> str:
    """The pseudo-labelled manifest of a pseudo-labelling output folder."""
    return os.path.join(os.fspath(folder), LABELS_FILE)


def report_path(folder: PathLike) -> str:
    """The JSON report of a pseudo-labelling output folder."""
    return os.path.join(os.fspath(folder), REPORT_FILE)


def outputs_exist(folder: PathLike) -> bool:
    """True when ``folder`` holds both outputs (the stage is done)."""
    return os.path.isfile(labels_path(folder)) and os.path.isfile(report_path(folder))


def known_labels(rows: Sequence[Row]) -> Optional[List[str]]:
    """The original speaker labels to report metrics against, None unless every row has one.

    A manifest pseudo-labelled earlier keeps its original labels in ``true_spk_id``.
    """
    column = "true_spk_id" if "true_spk_id" in rows[0] else "spk_id"
    labels = [row.get(column, "") for row in rows]
    return labels if all(labels) else None


def check_trainable(result: PseudoLabels, train_csv: PathLike) -> None:
    """DataError when the filters kept fewer than 2 clusters (no speaker classifier to train)."""
    report = result.report
    if report["clusters_after_filtering"] < 2:
        raise DataError(
            f"the filters kept {report['clusters_after_filtering']} cluster(s) "
            f"({report['kept']} utterances): nothing to train a speaker classifier on; raise "
            "clustering.ahc_threshold (more, smaller clusters), lower clustering.min_size, or filter less",
            train_csv,
        )


def write_outputs(rows: Sequence[Row], ids: Sequence[str], result: PseudoLabels, folder: PathLike) -> None:
    """Writes ``pseudo_labels.csv`` (:func:`relabel_rows`) and ``report.json`` into ``folder``."""
    write_manifest(relabel_rows(rows, ids, result.labels), labels_path(folder))
    with open(report_path(folder), "w", encoding="utf-8") as fout:
        json.dump(result.report, fout, indent=2)


def read_report(folder: PathLike) -> Dict:
    """The ``report.json`` of a pseudo-labelling output folder."""
    with open(report_path(folder), encoding="utf-8") as fin:
        return json.load(fin)


def summary_line(report: Dict, n_rows: int) -> str:
    """One console line: clusters kept, rows kept, and the agreement with the true labels."""
    line = (
        f"pseudo-labels | {report['clusters_after_filtering']} clusters, kept {report['kept']} of {n_rows} "
        f"utterances ({100 * report['kept_fraction']:.1f}%)"
    )
    kept = report.get("metrics", {}).get("kept")
    if kept:
        line += f" | NMI {kept['nmi']:.3f} ARI {kept['ari']:.3f} purity {kept['purity']:.3f} (kept rows)"
    return line


def relabel_rows(
    rows: Sequence[Row], ids: Sequence[str], labels: np.ndarray, prefix: str = "pl"
) -> List[Row]:
    """Manifest rows with ``spk_id`` set to pseudo-labels; dropped rows (label -1) left out.

    The original ``spk_id`` (possibly empty) moves to a ``true_spk_id`` column (the report's
    metrics use it); a row that already has ``true_spk_id`` (an earlier round's output) keeps it.

    Arguments
    ---------
    rows : manifest rows (dicts with at least ``ID``)
    ids : sequence [N] of utterance IDs, in the order of ``labels``
    labels : np.ndarray [N] int, cluster per ID, -1 for dropped
    prefix : str, cluster ids are ``f"{prefix}{label:05d}"``

    Returns
    -------
    list of dict, new rows in the order of ``rows``.

    Raises
    ------
    DataError
        ``ids`` and ``labels`` differ in length, or a row's ID has no label.
    """
    if len(ids) != len(labels):
        raise DataError(f"{len(ids)} IDs but {len(labels)} labels")
    label_of = dict(zip(ids, np.asarray(labels).tolist()))
    relabelled = []
    for row in rows:
        if row["ID"] not in label_of:
            raise DataError(f"utterance {row['ID']!r} has no pseudo-label (was it embedded?)")
        label = label_of[row["ID"]]
        if label < 0:
            continue
        true_speaker = row.get("true_spk_id", row.get("spk_id", ""))
        relabelled.append(dict(row, spk_id=f"{prefix}{label:05d}", true_spk_id=true_speaker))
    return relabelled
