"""Fitting a training recipe's Brain and exporting what it trained: the validation EER while it
trains, the decision threshold its export records, snapshots, and ``pretrained/``."""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Sequence

import torch
from speechbrain.utils.distributed import run_on_main

from speechbrain_dino.config.loading import data_replacements
from speechbrain_dino.data.manifest import Row
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.export import Architecture
from speechbrain_dino.inference.threshold_estimate import ClusterThresholdEstimator
from speechbrain_dino.training.snapshots import SnapshotPlan
from speechbrain_dino.verification.validation import TrialValidator

logger = logging.getLogger(__name__)


def trial_validator(hparams: Dict[str, Any]) -> Optional[TrialValidator]:
    """The validation of a training YAML with ``valid_csv`` and ``valid_trials`` set (None without):
    its EER every epoch, and the decision threshold the export records."""
    if not (hparams.get("valid_csv") and hparams.get("valid_trials")):
        return None
    return TrialValidator.from_files(
        hparams["valid_csv"],
        hparams["valid_trials"],
        replacements=data_replacements(hparams),
        sample_rate=hparams["sample_rate"],
        resample=hparams["resample"],
    )


def fit_and_export(
    hparams: Dict,
    run_opts: Dict,
    train_data,
    architecture: Architecture,
    metadata: Dict,
    modules: Optional[Dict[str, torch.nn.Module]] = None,
    recoverables: Optional[Dict[str, torch.nn.Module]] = None,
    labelled_rows: Optional[Sequence[Row]] = None,
) -> None:
    """Builds ``hparams['brain_class']``, trains (resuming from checkpoints), exports ``pretrained/``
    (and ``snapshots/step<S>/`` after the optimiser steps of ``export_steps``, when the YAML has it).

    Arguments
    ---------
    hparams : dict
        A training YAML: ``brain_class``, ``modules``, ``opt_class``, ``checkpointer``,
        ``epoch_counter``, ``train_dataloader_opts``, ``output_folder``; with ``valid_csv`` and
        ``valid_trials``, the validation EER every epoch and the export's decision threshold
        (:func:`trial_validator`).
    run_opts : dict
        SpeechBrain run options (device, DDP, precision, checkpoint interval...).
    train_data : DynamicItemDataset
        The training set.
    architecture : Architecture
        What the exported encoder is (written into ``pretrained/``).
    metadata : dict
        Provenance written beside the exported encoder.
    modules, recoverables : dict, optional
        Modules built outside the YAML (e.g. from a previous stage's export), added to the YAML's
        ``modules``, and those of them the checkpointer must hold.
    labelled_rows : sequence of dict, optional
        The training rows of a run on (pseudo-)speaker labels: without validation trials, the
        export records a decision threshold estimated from their clusters
        (:class:`~speechbrain_dino.inference.threshold_estimate.ClusterThresholdEstimator`; its draw
        leaves the global random state alone).
    """
    for name, module in (recoverables or {}).items():
        hparams["checkpointer"].add_recoverable(name, module)
    hparams["validator"] = trial_validator(hparams)
    hparams["threshold_estimator"] = None
    if hparams["validator"] is None and labelled_rows is not None:
        try:
            hparams["threshold_estimator"] = ClusterThresholdEstimator(
                labelled_rows, seed=int(hparams.get("seed", 0)), sample_rate=hparams["sample_rate"],
                resample=hparams["resample"],
            )
        except DataError as error:  # e.g. every label a single row: no same-cluster pair
            logger.warning("the export will record no decision threshold: %s", error)
    brain = hparams["brain_class"](
        modules={**hparams["modules"], **(modules or {})},
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.snapshots = SnapshotPlan.from_hparams(hparams, architecture, metadata)
    brain.fit(
        hparams["epoch_counter"],
        train_data,
        train_loader_kwargs=hparams["train_dataloader_opts"],
    )
    run_on_main(
        brain.export,
        args=[os.path.join(hparams["output_folder"], "pretrained"), architecture],
        kwargs={"metadata": metadata},
    )
