#!/usr/bin/env python3
"""AAM-softmax fine-tuning of a pretrained encoder on (pseudo-)speaker labels.

    python recipes/train_aam.py hparams/train_aam.yaml --init_from=exp/dino/pretrained \
        --train_csv=exp/round1/pseudo_labels.csv --output_folder=exp/round1/aam

The encoder's architecture and weights come from ``init_from`` (a ``pretrained/`` folder written by
this project: DINO or a previous round). Two phases (embedding layer + classifier, then the whole
network at a lower LR), margin warm-up, optional sub-centres (``--subcenters=3``: K centres per
speaker, see :mod:`speechbrain_dino.training.aam_loss`), random crops and augmentation; checkpoints every
epoch, resumes when restarted, and ends by writing ``<output_folder>/pretrained/``.
"""
import os
import sys

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_dino.data.crops import random_crop_pipeline
from speechbrain_dino.data.dataio import dataset_from_rows
from speechbrain_dino.errors import DataError
from speechbrain_dino.export import FBANK_CLASS, instantiate, load_pretrained_encoder
from speechbrain_dino.manifest import read_manifest
from speechbrain_dino.recipe_utils import exit_on_data_error, fit_and_export, load_recipe


def labelled_rows(csv_path):
    """Manifest rows, every one with a speaker label."""
    rows = read_manifest(csv_path)
    unlabelled = [index + 2 for index, row in enumerate(rows) if not row["spk_id"].strip()]
    if unlabelled:
        raise DataError(
            f"{len(unlabelled)} row(s) have an empty spk_id (AAM training needs labels), "
            f"first at line {unlabelled[0]}",
            csv_path,
        )
    return rows


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


def check_label_set(label_encoder, speakers, encoder_path):
    """DataError unless the (possibly reloaded) label encoder holds exactly ``speakers``.

    A label encoder left in ``save_folder`` by a run on another ``train_csv`` (e.g. an earlier
    round's pseudo-labels) would map the labels wrongly, and its checkpoints would not fit.
    """
    if set(label_encoder.lab2ind) != speakers:
        raise DataError(
            f"holds {len(label_encoder)} labels, but train_csv has {len(speakers)} "
            "different ones: this output folder belongs to a run on another train_csv; "
            "use a new --output_folder",
            encoder_path,
        )


def attach_models(hparams, n_speakers):
    """Adds the encoder (from ``init_from``), its Fbank and a classifier to modules and checkpointer.

    The classifier has ``n_speakers * hparams["subcenters"]`` centres (sub-centre AAM-softmax).
    """
    encoder, metadata = load_pretrained_encoder(hparams["init_from"])
    if metadata["sample_rate"] != hparams["sample_rate"]:
        raise DataError(
            f"the encoder works at {metadata['sample_rate']} Hz but sample_rate is "
            f"{hparams['sample_rate']}: set --sample_rate={metadata['sample_rate']}",
            hparams["init_from"],
        )
    compute_features = instantiate(FBANK_CLASS, metadata["fbank_kwargs"])
    with torch.no_grad():
        probe = compute_features(torch.zeros(1, metadata["sample_rate"]))
        embedding_size = encoder.eval()(probe).shape[-1]
    classifier = Classifier(input_size=embedding_size, out_neurons=n_speakers * hparams["subcenters"])
    hparams["modules"].update(
        compute_features=compute_features, embedding_model=encoder, classifier=classifier
    )
    hparams["checkpointer"].add_recoverable("embedding_model", encoder)
    hparams["checkpointer"].add_recoverable("classifier", classifier)
    for key in ("encoder_class", "encoder_kwargs", "fbank_kwargs", "sample_rate"):
        hparams[key] = metadata[key]


@exit_on_data_error
def main(argv):
    """Loads data and the initial encoder, fine-tunes, exports ``pretrained/``."""
    hparams_file, run_opts, overrides, hparams = load_recipe(argv, required=("train_csv", "init_from"))
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    rows = labelled_rows(hparams["train_csv"])
    n_speakers = len({row["spk_id"] for row in rows})
    attach_models(hparams, n_speakers)
    train_data, label_encoder = dataio_prep(hparams, rows)

    metadata = {
        "train_csv": os.path.abspath(hparams["train_csv"]),
        "init_from": os.path.abspath(hparams["init_from"]),
        "n_speakers": len(label_encoder),
        "subcenters": hparams["subcenters"],
    }
    fit_and_export(hparams, run_opts, train_data, metadata)


if __name__ == "__main__":
    main(sys.argv[1:])
