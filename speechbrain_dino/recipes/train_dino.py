#!/usr/bin/env python3
"""Self-supervised pretraining of an utterance encoder with DINO (or the contrastive baseline).

    python recipes/train_dino.py hparams/dino_ecapa.yaml --train_csv=train.csv --output_folder=exp/dino
    torchrun --nproc_per_node=4 -m speechbrain_dino.recipes.train_dino hparams/dino_ecapa.yaml ...

Labels are never read: every utterance of ``train_csv`` (a manifest, see docs/usage.md) gives a set of
global and local crops. The Brain class is chosen in the YAML (``brain_class``:
SelfDistillationBrain, the DINO family, or ContrastiveBrain). The run holds
``<output_folder>/run.lock`` (one run per folder), checkpoints every epoch (and every
``--ckpt_interval_minutes``), resumes when restarted with the same ``--output_folder``, and ends by
writing ``<output_folder>/pretrained/``, loadable offline with
``EncoderClassifier.from_hparams(source=<output_folder>/pretrained, savedir=...)``.
"""
import os
import sys

import speechbrain as sb

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import data_replacements, load_recipe
from speechbrain_dino.config.recipe_settings import TRAIN_DINO, TRAIN_DINO_KEYS
from speechbrain_dino.data.crops import multicrop_pipeline
from speechbrain_dino.data.dataio import dataset_from_rows
from speechbrain_dino.data.manifest import read_manifest
from speechbrain_dino.data.short_clips import drop_short_rows
from speechbrain_dino.inference.export import Architecture, pretrained_weights
from speechbrain_dino.training.fitting import fit_and_export
from speechbrain_dino.training.run_inputs import claim_output_folder
from speechbrain_dino.training.run_lock import output_folder_lock


def dataio_prep(hparams):
    """The training set: every utterance yields ``global_crops`` [G, Tg] and ``local_crops`` [L, Tl]."""
    rows = read_manifest(hparams["train_csv"], required=("ID", "duration", "wav"), replacements=data_replacements(hparams))
    train_data = dataset_from_rows(drop_short_rows(rows, hparams["train_csv"]))
    train_data.add_dynamic_item(multicrop_pipeline(hparams["crops"], resample=hparams["resample"]))
    train_data.set_output_keys(["id", "global_crops", "local_crops", "n_padded_crops"])
    return train_data


@clean_exit
def main(argv):
    """Loads the YAML, builds the dataset and Brain, trains, exports ``pretrained/``."""
    hparams_file, run_opts, overrides, hparams = load_recipe(
        argv, required=("train_csv",), usage=__doc__, default_hparams="hparams/dino_ecapa.yaml", settings=TRAIN_DINO,
        reads=TRAIN_DINO_KEYS,
    )
    with output_folder_lock(hparams["output_folder"]):
        sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
        inputs = {"train_csv": hparams["train_csv"]}
        if hparams.get("init_from"):  # a warm start (e.g. from a contrastive run) is an input too
            inputs["init_from"] = pretrained_weights(hparams["init_from"])
        claim_output_folder(hparams["output_folder"], inputs)
        train_data = dataio_prep(hparams)
        exported = hparams["brain_class"].exported_module_for(hparams)
        architecture = Architecture.from_yaml(hparams_file, overrides, exported)
        metadata = {"train_csv": os.path.abspath(hparams["train_csv"])}
        fit_and_export(hparams, run_opts, train_data, architecture, metadata)


if __name__ == "__main__":
    main(sys.argv[1:])
