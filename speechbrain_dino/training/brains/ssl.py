"""The self-supervised Brains: the DINO family (self-distillation), and the contrastive (NT-Xent)
baseline on the same crops."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional

import speechbrain as sb
import torch

from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.export import load_encoder_weights
from speechbrain_dino.training.brains.multicrop import MultiCropBrain, views_to_rows
from speechbrain_dino.training.dino import diagnose_collapse
from speechbrain_dino.training.ema import ema_update_
from speechbrain_dino.training.parameters import unwrap_parallel
from speechbrain_dino.training.regularizers import SelfDistillationViews

logger = logging.getLogger(__name__)


class SelfDistillationBrain(MultiCropBrain):
    """Self-distillation: the DINO family (DINO, RDINO, SDPN and their auxiliary terms).

    Modules: ``student``, ``student_head`` (:class:`~speechbrain_dino.training.dino.DINOHead`),
    ``teacher`` and ``teacher_head`` (same architectures; initialised from the student, never
    trained by the optimiser), ``dino_loss`` (:class:`~speechbrain_dino.training.dino.DINOLoss`,
    holds the centre); optionally ``aux_terms``
    (:class:`~speechbrain_dino.training.regularizers.AuxiliaryTerms`, weighted terms added to the
    loss) and ``teacher_augment`` (a milder augmenter for the teacher's crops).

    Settings read from ``hparams`` (all optional):

    - ``teacher_augmentation``: ``shared`` (the paper: the teacher sees the student's augmented
      global crops), ``clean`` (the teacher sees them unaugmented, as in SDPN) or ``mild``
      (augmented by ``teacher_augment``): asymmetric augmentation, a harder task for the student.
    - ``share_prototypes``: the teacher's logits use the student's prototypes (SDPN) instead of
      the teacher's EMA copy of them.
    - ``init_from``: a ``pretrained/`` folder whose encoder initialises the student (and so the
      teacher), e.g. a contrastive model: a warm start.

    Whether the student also sees the teacher's (global) crops is ``dino_loss.student_sees_global``
    (DINO: yes; SDPN: the student sees only the local crops).

    The exported (and evaluated) embedding is the teacher backbone's, as in the paper.
    The teacher runs in train mode like the student (BatchNorm on batch statistics), as in DINO:
    in eval mode its running statistics, an EMA at momentum >= 0.995, lag the activations for
    hundreds of steps and the teacher then maps every crop to nearly the same output, which
    collapses training to uniform targets. Its running statistics, updated by its own forward
    passes (``ema_update_`` averages parameters only, as the reference code), serve the exported
    encoder.
    """

    exported_module = "teacher"  # the teacher backbone: the paper evaluates it
    logged_schedule_values = ["lr", "weight_decay", "teacher_momentum", "teacher_temperature"]

    @classmethod
    def exported_module_for(cls, hparams: Mapping[str, Any]) -> str:
        """``hparams["export_encoder"]``: ``teacher`` (default, as the paper) or ``student`` (in a
        short run the EMA teacher can lag the student it averages)."""
        return hparams.get("export_encoder") or cls.exported_module

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: Whether ``aux_terms`` holds any term with a non-zero weight (it drops the others).
        self.has_aux_terms = "aux_terms" in self.modules and len(self.modules["aux_terms"]) > 0

    @property
    def trained_module_names(self) -> List[str]:
        """The student, its head, and the auxiliary terms' own parameters (e.g. a projector)."""
        return ["student", "student_head"] + (["aux_terms"] if self.has_aux_terms else [])

    @property
    def teacher_augmentation(self) -> str:
        """``hparams.teacher_augmentation`` (default ``shared``)."""
        return getattr(self.hparams, "teacher_augmentation", "shared")

    def on_fit_start(self) -> None:
        """[Warm start,] teacher := student, frozen for the optimiser; then schedule, DDP,
        optimiser, recovery (a resumed run then overwrites all of it from its checkpoint)."""
        if self.teacher_augmentation not in TEACHER_AUGMENTATIONS:
            raise DataError(
                f"teacher_augmentation must be one of {TEACHER_AUGMENTATIONS}, got {self.teacher_augmentation!r}"
            )
        if self.teacher_augmentation == "mild" and "teacher_augment" not in self.modules:
            raise DataError("teacher_augmentation: mild needs a teacher_augment module in the YAML")
        init_from = getattr(self.hparams, "init_from", None)
        if init_from:
            load_encoder_weights(self.modules.student, init_from)
        for student, teacher in (("student", "teacher"), ("student_head", "teacher_head")):
            self.modules[teacher].load_state_dict(self.modules[student].state_dict())
            self.modules[teacher].requires_grad_(False)
        super().on_fit_start()

    def teacher_crops(
        self, global_wavs: torch.Tensor, student_view: Optional[torch.Tensor], stage: sb.Stage, batch_size: int
    ) -> torch.Tensor:
        """The teacher's ``[G * B, T]`` global crops under :attr:`teacher_augmentation`
        (``student_view``: the same crops as the student got them, when it sees them)."""
        if self.teacher_augmentation == "shared":
            return student_view if student_view is not None else self.augmented(global_wavs, stage, batch_size)
        if self.teacher_augmentation == "mild":
            return self.augmented(global_wavs, stage, batch_size, augmenter="teacher_augment")
        return global_wavs

    def compute_forward(self, batch, stage) -> SelfDistillationViews:
        """Crops -> student and teacher embeddings and head outputs (see SelfDistillationViews).

        Global crops are augmented and featurised once per role: once for the student when it
        sees them, once more for the teacher only when its augmentation differs.
        """
        batch, batch_size = self.on_device(batch, stage)
        sees_global = self.modules.dino_loss.student_sees_global
        global_wavs = views_to_rows(batch.global_crops.data)
        student_global = self.augmented(global_wavs, stage, batch_size) if sees_global else None
        local_feats = self.features(self.augmented(views_to_rows(batch.local_crops.data), stage, batch_size))
        teacher_wavs = self.teacher_crops(global_wavs, student_global, stage, batch_size)
        teacher_feats = self.features(teacher_wavs)
        student_inputs = [local_feats]
        if sees_global:
            global_feats = teacher_feats if teacher_wavs is student_global else self.features(student_global)
            student_inputs.insert(0, global_feats)
        student_embeddings = torch.cat([self.modules.student(feats) for feats in student_inputs]).squeeze(1)
        student_head = self.modules.student_head(student_embeddings)
        with torch.no_grad():
            teacher_embeddings = self.modules.teacher(teacher_feats).squeeze(1)
            teacher_head = self.modules.teacher_head(teacher_embeddings)
            teacher_logits = teacher_head.logits
            if getattr(self.hparams, "share_prototypes", False):
                teacher_logits = unwrap_parallel(self.modules.student_head).last_layer(teacher_head.bottleneck)
        n_global_rows = global_wavs.shape[0] if sees_global else 0
        expander = None if student_head.expander is None else student_head.expander[:n_global_rows]
        return SelfDistillationViews(
            batch_size=batch_size,
            student_embeddings=student_embeddings,
            student_logits=student_head.logits,
            student_expander=expander,
            teacher_embeddings=teacher_embeddings,
            teacher_logits=teacher_logits,
            student_sees_global=sees_global,
            teacher_expander=teacher_head.expander,
        )

    def compute_objectives(self, views: SelfDistillationViews, batch, stage):
        """DINO (or SDPN) loss plus the weighted auxiliary terms; on training batches also moves
        the centre and records the loss parts and the collapse diagnostics."""
        output = self.modules.dino_loss(views.student_logits, views.teacher_logits, self.current.teacher_temperature)
        loss = output.loss
        stats = dict(output.stats)
        if self.has_aux_terms:
            aux_loss, aux_stats = self.modules.aux_terms(views, self.optimizer_step, self.schedule.total_steps)
            loss = loss + aux_loss
            stats.update(aux_stats, distillation_loss=output.loss.detach())
        if stage == sb.Stage.TRAIN:
            if self.modules.dino_loss.targets == "centering":
                self.modules.dino_loss.update_center(views.teacher_logits)
            self.record(stats, views.teacher_embeddings)
        return loss

    def before_optimizer_step(self) -> None:
        """No update of the prototype layer while it is frozen (the first epoch in the paper)."""
        if self.current is not None and self.current.freeze_last_layer:
            unwrap_parallel(self.modules.student_head).cancel_last_layer_gradients()

    def on_fit_batch_end(self, batch, outputs, loss, should_step: bool) -> None:
        """Teacher EMA after each optimiser step, with this step's momentum; then a snapshot when
        one is due (with the updated teacher)."""
        if should_step:
            momentum = self.current.teacher_momentum
            ema_update_(self.modules.teacher, self.modules.student, momentum)
            ema_update_(self.modules.teacher_head, self.modules.student_head, momentum)
        super().on_fit_batch_end(batch, outputs, loss, should_step)

    def check_epoch(self, train_stats: Dict[str, float], epoch: int) -> None:
        """Warns about the two DINO collapse modes (skipped in the first epoch)."""
        if epoch is None or epoch < 2:
            return
        message = diagnose_collapse(train_stats, self.modules.dino_loss.n_prototypes)
        if message:
            logger.warning("epoch %s: %s", epoch, message)
            self.hparams.train_logger.log_stats({"epoch": epoch, "WARNING": message})


class DINOBrain(SelfDistillationBrain):
    """The former name of :class:`SelfDistillationBrain`, for YAMLs of one's own that still name it
    as ``brain_class`` (logs one deprecation line)."""

    def __init__(self, *args, **kwargs) -> None:
        logger.warning("brain_class DINOBrain is deprecated: name %s.SelfDistillationBrain", __name__)
        super().__init__(*args, **kwargs)


#: How the teacher's crops are augmented (see :class:`SelfDistillationBrain`).
TEACHER_AUGMENTATIONS = ("shared", "clean", "mild")
#: Values of ``hparams.export_encoder``: the DINO backbones a run can export.
EXPORTED_ENCODERS = ("teacher", "student")


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
            self.record({}, embeddings)
        return self.modules.contrastive_loss(projections, n_views)
