"""The self-supervised Brains: DINO, and the contrastive (NT-Xent) baseline on the same crops."""
from __future__ import annotations

import logging
from typing import Dict

import speechbrain as sb
import torch

from speechbrain_dino.training.brains.base import embedding_spread
from speechbrain_dino.training.brains.multicrop import MultiCropBrain
from speechbrain_dino.training.dino import diagnose_collapse
from speechbrain_dino.training.ema import ema_update_
from speechbrain_dino.training.parameters import unwrap_parallel

logger = logging.getLogger(__name__)


class DINOBrain(MultiCropBrain):
    """DINO: student on all crops, EMA teacher on the global crops, centred sharpened targets.

    Modules: ``student``, ``student_head`` (:class:`~speechbrain_dino.training.dino.DINOHead`), ``teacher``
    and ``teacher_head`` (same architectures; initialised from the student, never trained by the
    optimiser), ``dino_loss`` (:class:`~speechbrain_dino.training.dino.DINOLoss`, holds the centre).
    The exported (and evaluated) embedding is the teacher backbone's, as in the paper.
    The teacher runs in train mode like the student (BatchNorm on batch statistics), as in DINO:
    in eval mode its running statistics, an EMA at momentum >= 0.995, lag the activations for
    hundreds of steps and the teacher then maps every crop to nearly the same output, which
    collapses training to uniform targets. Its running statistics (updated by its own forward
    passes and averaged with the student's by ``ema_update_``) serve the exported encoder.
    """

    trained_module_names = ["student", "student_head"]
    exported_module = "teacher"  # the teacher backbone: the paper evaluates it
    logged_schedule_values = ["lr", "weight_decay", "teacher_momentum", "teacher_temperature"]

    def on_fit_start(self) -> None:
        """Teacher := student, frozen for the optimiser; then schedule, DDP, optimiser, recovery."""
        for student, teacher in (("student", "teacher"), ("student_head", "teacher_head")):
            self.modules[teacher].load_state_dict(self.modules[student].state_dict())
            self.modules[teacher].requires_grad_(False)
        super().on_fit_start()

    def compute_forward(self, batch, stage):
        """Crops -> (student logits ``[V*B, K]``, teacher logits ``[G*B, K]``, teacher embeddings)."""
        global_feats, local_feats = self.crop_features(batch, stage)
        student_embeddings = torch.cat(
            [self.modules.student(global_feats), self.modules.student(local_feats)]
        )
        student_logits = self.modules.student_head(student_embeddings)
        with torch.no_grad():
            teacher_embeddings = self.modules.teacher(global_feats)
            teacher_logits = self.modules.teacher_head(teacher_embeddings)
        return student_logits, teacher_logits, teacher_embeddings

    def compute_objectives(self, predictions, batch, stage):
        """DINO loss; moves the centre and records collapse diagnostics on training batches."""
        student_logits, teacher_logits, teacher_embeddings = predictions
        output = self.modules.dino_loss(student_logits, teacher_logits, self.current.teacher_temperature)
        if stage == sb.Stage.TRAIN:
            self.modules.dino_loss.update_center(teacher_logits)
            self.record({**output.stats, "embedding_spread": embedding_spread(teacher_embeddings)})
        return output.loss

    def before_optimizer_step(self) -> None:
        """No update of the prototype layer while it is frozen (the first epoch in the paper)."""
        if self.current is not None and self.current.freeze_last_layer:
            unwrap_parallel(self.modules.student_head).cancel_last_layer_gradients()

    def on_fit_batch_end(self, batch, outputs, loss, should_step: bool) -> None:
        """Teacher EMA after each optimiser step, with this step's momentum."""
        if should_step:
            momentum = self.current.teacher_momentum
            ema_update_(self.modules.teacher, self.modules.student, momentum)
            ema_update_(self.modules.teacher_head, self.modules.student_head, momentum)

    def check_epoch(self, train_stats: Dict[str, float], epoch: int) -> None:
        """Warns about the two DINO collapse modes (skipped in the first epoch)."""
        if epoch is None or epoch < 2:
            return
        message = diagnose_collapse(train_stats, self.modules.dino_loss.n_prototypes)
        if message:
            logger.warning("epoch %s: %s", epoch, message)
            self.hparams.train_logger.log_stats({"epoch": epoch, "WARNING": message})


class ContrastiveBrain(MultiCropBrain):
    """Contrastive baseline (NT-Xent, SimCLR-style) on the same crops, augmentation and encoder.

    Modules: ``student``, ``projection_head`` (:class:`~speechbrain_dino.training.contrastive.ProjectionHead`),
    ``contrastive_loss`` (:class:`~speechbrain_dino.training.contrastive.NTXentLoss`). Every crop of an
    utterance is a positive of the others; other utterances in the batch are negatives.
    """

    trained_module_names = ["student", "projection_head"]
    exported_module = "student"

    def compute_forward(self, batch, stage):
        """Crops -> (projections ``[V*B, P]``, embeddings, number of views V)."""
        global_feats, local_feats = self.crop_features(batch, stage)
        embeddings = torch.cat([self.modules.student(global_feats), self.modules.student(local_feats)])
        n_views = batch.global_crops.data.shape[1] + batch.local_crops.data.shape[1]
        return self.modules.projection_head(embeddings), embeddings, n_views

    def compute_objectives(self, predictions, batch, stage):
        """NT-Xent over all crops; records the embedding spread."""
        projections, embeddings, n_views = predictions
        if stage == sb.Stage.TRAIN:
            self.record({"embedding_spread": embedding_spread(embeddings.detach())})
        return self.modules.contrastive_loss(projections, n_views)
