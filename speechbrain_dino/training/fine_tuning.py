"""What AAM fine-tuning starts from: labelled rows, a label set that fits the run, and the models.

The encoder and its front end come from the ``pretrained/`` folder of the previous stage (DINO or
the previous round); the classifier is new, with ``n_classes * subcenters`` cosine centres
(sub-centre AAM-softmax, see :mod:`speechbrain_dino.training.aam_loss`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Set

import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from torch import nn

from speechbrain_dino.data.manifest import Row, read_manifest
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.inference.export import Architecture, load_pretrained_encoder


def labelled_rows(csv_path: PathLike, replacements: Optional[Mapping[str, str]] = None) -> List[Row]:
    """Manifest rows, every one with a speaker label (DataError naming the first without)."""
    rows = read_manifest(csv_path, replacements=replacements)
    unlabelled = [index + 2 for index, row in enumerate(rows) if not row["spk_id"].strip()]
    if unlabelled:
        raise DataError(
            f"{len(unlabelled)} row(s) have an empty spk_id (AAM training needs labels), "
            f"first at line {unlabelled[0]}",
            csv_path,
        )
    speakers = {row["spk_id"] for row in rows}
    if len(speakers) < 2:
        raise DataError(
            f"has {len(speakers)} speaker label(s); AAM training classifies speakers and needs at least 2",
            csv_path,
        )
    return rows


def budgeted_epochs(n_rows: int, n_classes: int, examples_per_class: float, min_epochs: int, max_epochs: int) -> int:
    """Epochs of ``n_rows`` labelled rows in which each of ``n_classes`` classes is seen about
    ``examples_per_class`` times (``examples_per_class x n_classes / n_rows``, rounded up), within
    ``[min_epochs, max_epochs]``.

    Pseudo-labels change from round to round and from corpus to corpus: a few hundred rows in 30
    clusters need many passes for the classifier's centres to settle, a million rows in 7,000
    clusters need few. A fixed ``number_of_epochs`` fits one of them.
    """
    if n_rows < 1 or n_classes < 1:
        raise ValueError(f"need rows and classes, got {n_rows} rows and {n_classes} classes")
    wanted = math.ceil(examples_per_class * n_classes / n_rows)
    return int(min(max(wanted, min_epochs), max_epochs))


def check_label_set(label_encoder: CategoricalEncoder, speakers: Set[str], encoder_path: PathLike) -> None:
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


def embedding_size(encoder: nn.Module, compute_features: nn.Module, sample_rate: int) -> int:
    """``D`` of an encoder's ``[B, 1, D]`` output, from one second of silence (the encoder is left
    in eval mode)."""
    with torch.no_grad():
        probe = compute_features(torch.zeros(1, sample_rate))
        return encoder.eval()(probe).shape[-1]


@dataclass
class FineTuneModels:
    """The modules of an AAM fine-tuning run and the architecture its export records.

    Attributes
    ----------
    compute_features : nn.Module
        The encoder's filterbank (as exported with it).
    embedding_model : nn.Module
        The encoder, with the pretrained weights.
    classifier : Classifier
        SpeechBrain's cosine classifier, ``[n_classes * subcenters, D]`` centres, class-major.
    architecture : Architecture
        The encoder's architecture (unchanged by fine-tuning).
    """

    compute_features: nn.Module
    embedding_model: nn.Module
    classifier: Classifier
    architecture: Architecture

    @classmethod
    def from_pretrained(
        cls, init_from: PathLike, n_classes: int, subcenters: int, sample_rate: int
    ) -> "FineTuneModels":
        """The encoder of the ``pretrained/`` folder ``init_from`` and a new classifier.

        Raises
        ------
        DataError
            ``init_from`` was not exported by this project, or works at another sample rate.
        """
        encoder, architecture = load_pretrained_encoder(init_from)
        if architecture.sample_rate != sample_rate:
            raise DataError(
                f"the encoder works at {architecture.sample_rate} Hz but sample_rate is "
                f"{sample_rate}: set --sample_rate={architecture.sample_rate}",
                init_from,
            )
        compute_features = architecture.build_features()
        size = embedding_size(encoder, compute_features, architecture.sample_rate)
        classifier = Classifier(input_size=size, out_neurons=n_classes * subcenters)
        return cls(compute_features, encoder, classifier, architecture)

    def modules(self) -> Dict[str, nn.Module]:
        """The Brain modules these models provide."""
        return {
            "compute_features": self.compute_features,
            "embedding_model": self.embedding_model,
            "classifier": self.classifier,
        }

    def recoverables(self) -> Dict[str, nn.Module]:
        """The models a checkpoint must hold (the trained ones)."""
        return {"embedding_model": self.embedding_model, "classifier": self.classifier}
