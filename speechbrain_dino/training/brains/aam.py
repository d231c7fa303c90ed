"""AAM-softmax fine-tuning on (pseudo-)speaker labels, in two phases."""
from __future__ import annotations

from typing import List

import speechbrain as sb
import torch
from torch import nn

from speechbrain_dino.errors import DataError
from speechbrain_dino.training.brains.base import EncoderBrain
from speechbrain_dino.training.parameters import unwrap_parallel
from speechbrain_dino.training.schedules import FineTuneSchedule


class AAMBrain(EncoderBrain):
    """Speaker-classification fine-tuning with AAM-softmax on (pseudo-)labels, in two phases.

    Modules: ``embedding_model`` (initialised from a DINO or previous-round ``pretrained/``),
    ``classifier`` (SpeechBrain's cosine ``Classifier`` with ``C * K`` rows for C speakers and
    K = ``hparams.subcenters`` centres each; 1 = plain AAM-softmax).
    ``hparams.aam_loss`` is an :class:`~speechbrain_dino.training.aam_loss.AAMSoftmaxLoss`, given
    each step the margin of the schedule; ``hparams.head_submodules`` names the encoder's
    embedding layer(s), trained alone with the classifier during the first phase (see
    :class:`~speechbrain_dino.training.schedules.FineTuneSchedule`).
    Batches carry ``sig`` ``[B, T]`` random crops and ``spk_id_encoded`` ``[B, 1]``.
    """

    trained_module_names = ["embedding_model", "classifier"]
    exported_module = "embedding_model"
    logged_schedule_values = ["lr", "weight_decay", "margin"]
    schedule_class = FineTuneSchedule

    def on_fit_start(self) -> None:
        """Checks ``head_submodules`` against the encoder, then SpeechBrain's start."""
        children = [name for name, _ in unwrap_parallel(self.modules.embedding_model).named_children()]
        unknown = [name for name in self.hparams.head_submodules if name not in children]
        if unknown:
            raise DataError(
                f"head_submodules {unknown} are not parts of the encoder, whose parts are {children}: "
                "set head_submodules to its embedding layer(s)"
            )
        self.check_resumed_classifier()
        super().on_fit_start()

    def check_resumed_classifier(self) -> None:
        """The checkpoint to resume from (the newest) must hold a classifier of this run's shape.

        Its ``[C * K, D]`` weight depends on the labels and on ``subcenters``; a different one
        would otherwise fail deep inside SpeechBrain's recovery.
        """
        checkpoint = None if self.checkpointer is None else self.checkpointer.find_checkpoint()
        if checkpoint is None or "classifier" not in checkpoint.paramfiles:
            return
        saved = torch.load(checkpoint.paramfiles["classifier"], map_location="cpu", weights_only=True)
        expected = unwrap_parallel(self.modules.classifier).weight.shape
        if saved["weight"].shape != expected:
            raise DataError(
                f"its classifier weight is {list(saved['weight'].shape)} but this run builds "
                f"{list(expected)} ({expected[0] // self.hparams.subcenters} speakers x "
                f"subcenters={self.hparams.subcenters}, embedding size): resume with the same "
                "train_csv, init_from and subcenters, or use a new output_folder",
                checkpoint.path,
            )

    def backbone_parameters(self) -> List[nn.Parameter]:
        """Encoder parameters outside ``head_submodules`` (frozen in the first phase)."""
        encoder = unwrap_parallel(self.modules.embedding_model)
        return [
            parameter
            for name, child in encoder.named_children()
            if name not in self.hparams.head_submodules
            for parameter in child.parameters()
        ]

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        """LR and weight decay of this step; a frozen backbone also keeps its BatchNorm
        statistics (eval mode) during the first phase."""
        super().on_fit_batch_start(batch, should_step)
        encoder = unwrap_parallel(self.modules.embedding_model)
        for name, child in encoder.named_children():
            if name not in self.hparams.head_submodules:
                child.train(not self.current.backbone_frozen)

    def compute_forward(self, batch, stage):
        """Crops -> (class cosines ``[B, 1, C]``, embeddings ``[B, 1, D]``).

        The classifier's ``[B, 1, C * K]`` sub-centre cosines are reduced to each class's max.
        """
        batch = batch.to(self.device)
        wavs = batch.sig.data
        wavs = self.augmented(wavs, stage, wavs.shape[0])
        embeddings = self.modules.embedding_model(self.features(wavs))
        cosines = self.hparams.aam_loss.class_cosines(self.modules.classifier(embeddings))
        return cosines, embeddings

    def compute_objectives(self, predictions, batch, stage):
        """AAM-softmax loss at this step's margin; records training accuracy and the embedding spread."""
        cosines, embeddings = predictions
        targets = batch.spk_id_encoded.data
        loss = self.hparams.aam_loss(cosines, targets, self.current.margin)
        if stage == sb.Stage.TRAIN:
            accuracy = (cosines.squeeze(1).argmax(dim=-1) == targets.view(-1)).float().mean()
            self.record({"accuracy": accuracy}, embeddings)
        return loss

    def drop_frozen_gradients(self) -> None:
        """First phase: the backbone gets no update (gradients dropped before clipping, so they
        count in no norm and AdamW skips them)."""
        if self.current is not None and self.current.backbone_frozen:
            for parameter in self.backbone_parameters():
                parameter.grad = None
