#!/usr/bin/env python3
"""AAM-softmax fine-tuning of a pretrained encoder on (pseudo-)speaker labels.

    python recipes/train_aam.py hparams/train_aam.yaml --init_from=exp/dino/pretrained \
        --train_csv=exp/round1/pseudo_labels.csv --output_folder=exp/round1/aam

The encoder's architecture and weights come from ``init_from`` (a ``pretrained/`` folder written by
this project: DINO or a previous round). Two phases (embedding layer + classifier, then the whole
network at a lower LR) and a margin warm-up, both as shares of the run; optional sub-centres
(``--subcenters=3``: K centres per speaker, see :mod:`speechbrain_dino.training.aam_loss`); random
crops and augmentation. With ``examples_per_class`` the number of epochs comes from the labels
(:func:`~speechbrain_dino.training.fine_tuning.budgeted_epochs`), so a round with more clusters or
fewer members trains longer. Holds ``<output_folder>/run.lock`` (one run per folder), checkpoints
every epoch, resumes when restarted, and ends by writing ``<output_folder>/pretrained/``, which
records a decision threshold: at the EER point of ``valid_csv`` / ``valid_trials`` when given, else
estimated from the training labels' clusters (:mod:`speechbrain_dino.inference.threshold_estimate`).
"""
import logging
import os
import sys

import speechbrain as sb
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import data_replacements, load_recipe
from speechbrain_dino.config.recipe_settings import TRAIN_AAM, TRAIN_AAM_KEYS
from speechbrain_dino.data.crops import random_crop_pipeline
from speechbrain_dino.data.dataio import dataset_from_rows
from speechbrain_dino.data.short_clips import drop_short_rows
from speechbrain_dino.inference.export import pretrained_weights
from speechbrain_dino.training.fine_tuning import FineTuneModels, budgeted_epochs, check_label_set, labelled_rows
from speechbrain_dino.training.fitting import fit_and_export
from speechbrain_dino.training.run_inputs import claim_output_folder
from speechbrain_dino.training.run_lock import output_folder_lock

logger = logging.getLogger(__name__)


def dataio_prep(hparams, rows):
    """Training set of random crops ``sig`` [T] with ``spk_id_encoded``; and the label encoder."""
    train_data = dataset_from_rows(rows)
    train_data.add_dynamic_item(
        random_crop_pipeline(hparams["crop_seconds"], hparams["sample_rate"], hparams["resample"])
    )
    label_encoder = CategoricalEncoder()

    @takes("spk_id")
    @provides("spk_id_encoded")
    def encode_label(spk_id):
        return label_encoder.encode_sequence_torch([spk_id])

    train_data.add_dynamic_item(encode_label)
    encoder_path = os.path.join(hparams["save_folder"], "label_encoder.txt")
    label_encoder.load_or_create(path=encoder_path, from_didatasets=[train_data], output_key="spk_id")
    check_label_set(label_encoder, {row["spk_id"] for row in rows}, encoder_path)
    train_data.set_output_keys(["id", "sig", "spk_id_encoded"])
    return train_data, label_encoder


def plan_epochs(hparams, rows):
    """Sets ``number_of_epochs`` from the labels (:func:`budgeted_epochs`; the YAML's value is the
    upper bound) and logs why."""
    n_classes = len({row["spk_id"] for row in rows})
    epochs = budgeted_epochs(
        len(rows), n_classes, hparams["examples_per_class"], hparams["min_epochs"], hparams["number_of_epochs"]
    )
    logger.info(
        "AAM budget: %d epochs for %d classes over %d rows (%.1f per class): examples_per_class %g "
        "x classes / rows, within [min_epochs %d, number_of_epochs %d]",
        epochs, n_classes, len(rows), len(rows) / n_classes, hparams["examples_per_class"],
        hparams["min_epochs"], hparams["number_of_epochs"],
    )
    hparams["number_of_epochs"] = epochs
    hparams["epoch_counter"].limit = epochs


@clean_exit
def main(argv):
    """Loads data and the initial encoder, fine-tunes, exports ``pretrained/``."""
    hparams_file, run_opts, overrides, hparams = load_recipe(
        argv,
        required=("train_csv", "init_from"),
        usage=__doc__,
        default_hparams="hparams/train_aam.yaml",
        settings=TRAIN_AAM, reads=TRAIN_AAM_KEYS,
    )
    with output_folder_lock(hparams["output_folder"]):
        sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
        claim_output_folder(
            hparams["output_folder"],
            {"train_csv": hparams["train_csv"], "init_from": pretrained_weights(hparams["init_from"])},
        )
        rows = drop_short_rows(labelled_rows(hparams["train_csv"], data_replacements(hparams)), hparams["train_csv"])
        if hparams["examples_per_class"] is not None:
            plan_epochs(hparams, rows)
        models = FineTuneModels.from_pretrained(
            hparams["init_from"], len({row["spk_id"] for row in rows}), hparams["subcenters"], hparams["sample_rate"]
        )
        train_data, label_encoder = dataio_prep(hparams, rows)
        metadata = {
            "train_csv": os.path.abspath(hparams["train_csv"]),
            "init_from": os.path.abspath(hparams["init_from"]),
            "n_speakers": len(label_encoder),
            "subcenters": hparams["subcenters"],
            "number_of_epochs": hparams["number_of_epochs"],
        }
        fit_and_export(
            hparams, run_opts, train_data, models.architecture, metadata,
            modules=models.modules(), recoverables=models.recoverables(), labelled_rows=rows,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
