"""SpeechBrain Brains of the project: DINO, the contrastive baseline, and their shared base.

Every Brain here trains an utterance encoder (SpeechBrain's ECAPA-TDNN by default) on waveform
crops: Fbank -> sentence mean normalisation -> encoder -> [B, 1, D] embedding. The shared base,
:class:`EncoderBrain`, holds what all of them need: feature extraction, per-step LR / weight-decay
schedule, gradient clipping over all parameter groups, DDP on CPU (gloo), per-epoch statistics,
optional validation EER, checkpointing and the ``pretrained/`` export.

Batches come from :func:`speechbrain_dino.crops.multicrop_pipeline`: ``global_crops`` ``[B, G, Tg]``
and ``local_crops`` ``[B, L, Tl]``. Inside the Brains the crops are stacked view-major
(``[G * B, Tg]``: view 0 of every utterance, then view 1, ...), the layout the losses expect.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional

import speechbrain as sb
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from speechbrain.nnet.losses import AdditiveAngularMargin
from speechbrain.utils.distributed import if_main_process

from speechbrain_dino.dino import (
    diagnose_collapse,
    ema_update_,
    param_groups_for_weight_decay,
    unwrap_parallel,
)
from speechbrain_dino.epoch_stats import EpochAverages
from speechbrain_dino.errors import DataError
from speechbrain_dino.export import export_pretrained
from speechbrain_dino.rng import decorrelate_ranks
from speechbrain_dino.schedules import DINOSchedule, FineTuneSchedule
from speechbrain_dino.subcenter import max_over_subcenters

logger = logging.getLogger(__name__)


def views_to_rows(crops: torch.Tensor) -> torch.Tensor:
    """``[B, V, T]`` crops -> ``[V * B, T]`` view-major rows."""
    batch, views, frames = crops.shape
    return crops.transpose(0, 1).reshape(views * batch, frames)


def embedding_spread(embeddings: torch.Tensor) -> torch.Tensor:
    """Std across the batch of L2-normalised embeddings, times sqrt(D): ~1 healthy, 0 collapsed.

    Arguments
    ---------
    embeddings : torch.Tensor
        ``[N, D]`` or ``[N, 1, D]``.
    """
    flat = nn.functional.normalize(embeddings.reshape(embeddings.shape[0], -1).float(), dim=-1)
    return flat.std(dim=0).mean() * math.sqrt(flat.shape[-1])


class EncoderBrain(sb.Brain):
    """Base of the project's Brains: features, schedule, clipping, stats, validation, export.

    Expected ``modules``: ``compute_features``, ``mean_var_norm``, the trained encoder and heads,
    optionally ``augment`` (a waveform augmenter applied to training crops).
    Expected ``hparams``: ``schedule`` (``DINOSchedule`` arguments, see :meth:`build_schedule`),
    ``number_of_epochs``, ``train_logger``, and optionally ``validator``
    (:class:`~speechbrain_dino.validation.TrialValidator`), ``ckpts_to_keep``.
    Subclasses define :attr:`trained_module_names` and :meth:`exported_encoder`.
    """

    #: Modules whose parameters the optimiser updates.
    trained_module_names: List[str] = []
    #: Schedule values written to the epoch log.
    logged_schedule_values: List[str] = ["lr", "weight_decay"]
    #: Per-step schedule, built from ``hparams.schedule`` with ``from_epochs``.
    schedule_class = DINOSchedule

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps_per_epoch: Optional[int] = None
        self.schedule: Optional[DINOSchedule] = None
        self.current = None  # the schedule's values at the current step (a NamedTuple)
        self.epoch_averages = EpochAverages()
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("epoch_averages", self.epoch_averages, optional_load=True)

    # ----------------------------------------------------------------- set-up
    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """Also records the number of optimiser steps per epoch (after DDP sharding).

        The training loader gets its own ``torch.Generator``: creating a loader iterator draws a
        worker seed from it instead of from the global generator that crops and augmentation use,
        so a run resumed mid-epoch continues on exactly the random stream of an uninterrupted run
        (exactly with ``num_workers: 0``; worker processes restart with new seeds otherwise).
        """
        if stage == sb.Stage.TRAIN and "generator" not in loader_kwargs:
            loader_kwargs["generator"] = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = max(1, len(loader) // self.grad_accumulation_factor)
        return loader

    def build_schedule(self):
        """The per-step schedule (``schedule_class``) from ``hparams.schedule``, epochs -> steps."""
        if self.steps_per_epoch is None:
            raise RuntimeError("the schedule needs the training loader (call fit())")
        return self.schedule_class.from_epochs(
            epochs=self.hparams.number_of_epochs,
            steps_per_epoch=self.steps_per_epoch,
            **self.hparams.schedule,
        )

    def init_optimizers(self) -> None:
        """One optimiser over the trained modules, no weight decay on biases and norms."""
        modules = [self.modules[name] for name in self.trained_module_names]
        groups = param_groups_for_weight_decay(modules, self.hparams.schedule.get("weight_decay", 0.0))
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def on_fit_start(self) -> None:
        """Builds the schedule, SpeechBrain's start (DDP wrap, optimiser, recovery), then gives
        each DDP rank its own random stream (:func:`~speechbrain_dino.rng.decorrelate_ranks`)."""
        self.schedule = self.build_schedule()
        super().on_fit_start()
        decorrelate_ranks()

    def _wrap_distributed(self) -> None:
        """DDP as SpeechBrain does it, but without SyncBatchNorm under gloo (CPU).

        SpeechBrain converts every module to SyncBatchNorm, which only runs on GPU; on CPU each
        process keeps its own BatchNorm statistics instead.
        """
        if not (self.distributed_launch and self.distributed_backend == "gloo"):
            super()._wrap_distributed()
            return
        for name, module in self.modules.items():
            if any(parameter.requires_grad for parameter in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )

    # ------------------------------------------------------------ per batch
    def features(self, wavs: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` equal-length crops -> normalised filterbanks ``[N, frames, n_mels]``."""
        lengths = torch.ones(wavs.shape[0], device=wavs.device)
        return self.modules.mean_var_norm(self.modules.compute_features(wavs), lengths)

    def augmented(self, wavs: torch.Tensor, stage: sb.Stage, batch_size: int) -> torch.Tensor:
        """``[V * B, T]`` view-major crops, each augmented independently during training.

        Row ``i`` belongs to utterance ``i % B``, so in-batch babble never mixes in another crop
        of the same utterance. Runs in float32 outside autocast (FFT convolutions).
        """
        if stage != sb.Stage.TRAIN or "augment" not in self.modules:
            return wavs
        rows = torch.arange(wavs.shape[0], device=wavs.device)
        with torch.autocast(device_type=self.device_type, enabled=False):
            return self.modules.augment(
                wavs.float(), torch.ones(wavs.shape[0], device=wavs.device), rows % batch_size
            )

    def crop_features(self, batch, stage: sb.Stage):
        """Multi-crop batch -> (global ``[G*B, frames, F]``, local ``[L*B, frames', F]``) features.

        Crops are stacked view-major and, during training, each is augmented independently.
        Crops padded by repetition (utterances shorter than a crop) are counted in the epoch log
        as ``padded_crops_per_batch``.
        """
        batch = batch.to(self.device)
        batch_size = batch.global_crops.data.shape[0]
        if stage == sb.Stage.TRAIN:
            self.epoch_averages.add({"padded_crops_per_batch": sum(batch.n_padded_crops)})
        return tuple(
            self.features(self.augmented(views_to_rows(crops.data), stage, batch_size))
            for crops in (batch.global_crops, batch.local_crops)
        )

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        """Sets LR and weight decay for this optimiser step."""
        self.current = self.schedule.apply(self.optimizer, self.optimizer_step)

    def before_optimizer_step(self) -> None:
        """Hook between backward and the optimiser step (gradients unscaled)."""

    def optimizers_step(self) -> None:
        """Unscale, subclass hook, clip the norm over ALL parameter groups, step.

        SpeechBrain's version clips only the first parameter group, which would leave the
        undecayed biases and norms unclipped.
        """
        self.scaler.unscale_(self.optimizer)
        self.before_optimizer_step()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def record(self, stats: Dict[str, torch.Tensor]) -> None:
        """Adds one batch's diagnostics to the epoch averages (checkpointed with the run)."""
        self.epoch_averages.add_batch(stats)

    # ------------------------------------------------------------- per epoch
    def on_stage_start(self, stage, epoch=None) -> None:
        """Starts the epoch's averages (kept when resuming mid-epoch)."""
        if stage == sb.Stage.TRAIN:
            self.epoch_averages.start_epoch()

    def on_stage_end(self, stage, stage_loss, epoch=None) -> None:
        """Logs the epoch (loss, diagnostics, schedule values, validation EER) and checkpoints."""
        if stage != sb.Stage.TRAIN:
            return
        train_stats = {"loss": stage_loss}
        train_stats.update(self.epoch_averages.averages())
        valid_stats = self.validate()
        meta = {"epoch": epoch, "steps": self.optimizer_step}
        if self.current is not None:
            meta.update((key, getattr(self.current, key)) for key in self.logged_schedule_values)
        self.hparams.train_logger.log_stats(
            stats_meta=meta, train_stats=train_stats, valid_stats=valid_stats or None
        )
        self.check_epoch(train_stats, epoch)
        ckpt_meta = {"loss": float(stage_loss), **(valid_stats or {})}
        self.checkpointer.save_and_keep_only(
            meta=ckpt_meta,
            end_of_epoch=True,
            num_to_keep=getattr(self.hparams, "ckpts_to_keep", 2),
        )

    def check_epoch(self, train_stats: Dict[str, float], epoch: int) -> None:
        """Subclass hook: inspect the epoch's statistics (e.g. collapse detection)."""

    def validate(self) -> Dict[str, float]:
        """Validation EER of :meth:`exported_encoder` when ``hparams.validator`` is set.

        Under DDP only the main process validates (it alone logs and checkpoints); the other
        ranks wait for it at the next step's gradient synchronisation.
        """
        validator = getattr(self.hparams, "validator", None)
        if validator is None or not if_main_process():
            return {}
        modules = {
            "compute_features": self.modules.compute_features,
            "mean_var_norm": self.modules.mean_var_norm,
            "embedding_model": self.exported_encoder(),
        }
        metrics = validator(modules, self.device)
        return {key: metrics[key] for key in ("EER", "minDCF_0.01")}

    # ---------------------------------------------------------------- export
    def exported_encoder(self) -> nn.Module:
        """The encoder whose embeddings this training produces (unwrapped from DDP)."""
        raise NotImplementedError

    def export(self, folder: str, metadata: Optional[dict] = None) -> str:
        """Writes ``folder`` (``pretrained/``) loadable by ``EncoderClassifier.from_hparams``."""
        info = {"stage": type(self).__name__, "optimizer_steps": self.optimizer_step}
        info.update(metadata or {})
        return export_pretrained(
            folder,
            self.exported_encoder(),
            encoder_class=self.hparams.encoder_class,
            encoder_kwargs=self.hparams.encoder_kwargs,
            fbank_kwargs=self.hparams.fbank_kwargs,
            sample_rate=self.hparams.sample_rate,
            metadata=info,
        )


class DINOBrain(EncoderBrain):
    """DINO: student on all crops, EMA teacher on the global crops, centred sharpened targets.

    Modules: ``student``, ``student_head`` (:class:`~speechbrain_dino.dino.DINOHead`), ``teacher``
    and ``teacher_head`` (same architectures; initialised from the student, never trained by the
    optimiser), ``dino_loss`` (:class:`~speechbrain_dino.dino.DINOLoss`, holds the centre).
    The exported (and evaluated) embedding is the teacher backbone's, as in the paper.
    The teacher runs in train mode like the student (BatchNorm on batch statistics), as in DINO:
    in eval mode its running statistics, an EMA at momentum >= 0.995, lag the activations for
    hundreds of steps and the teacher then maps every crop to nearly the same output, which
    collapses training to uniform targets. Its running statistics (updated by its own forward
    passes and averaged with the student's by ``ema_update_``) serve the exported encoder.
    """

    trained_module_names = ["student", "student_head"]
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

    def exported_encoder(self) -> nn.Module:
        """The teacher backbone (the paper evaluates it)."""
        return unwrap_parallel(self.modules.teacher)


class ContrastiveBrain(EncoderBrain):
    """Contrastive baseline (NT-Xent, SimCLR-style) on the same crops, augmentation and encoder.

    Modules: ``student``, ``projection_head`` (:class:`~speechbrain_dino.contrastive.ProjectionHead`),
    ``contrastive_loss`` (:class:`~speechbrain_dino.contrastive.NTXentLoss`). Every crop of an
    utterance is a positive of the others; other utterances in the batch are negatives.
    """

    trained_module_names = ["student", "projection_head"]

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

    def exported_encoder(self) -> nn.Module:
        """The trained encoder."""
        return unwrap_parallel(self.modules.student)


def set_aam_margin(loss: AdditiveAngularMargin, margin: float) -> None:
    """Changes an ``AdditiveAngularMargin``'s margin (it caches cos/sin of it at construction)."""
    loss.margin = margin
    loss.cos_m = math.cos(margin)
    loss.sin_m = math.sin(margin)
    loss.th = math.cos(math.pi - margin)
    loss.mm = math.sin(math.pi - margin) * margin


class AAMBrain(EncoderBrain):
    """Speaker-classification fine-tuning with AAM-softmax on (pseudo-)labels, in two phases.

    Modules: ``embedding_model`` (initialised from a DINO or previous-round ``pretrained/``),
    ``classifier`` (SpeechBrain's cosine ``Classifier`` with ``C * hparams.subcenters`` rows for
    C speakers: sub-centre AAM-softmax, see :mod:`speechbrain_dino.subcenter`; 1 = plain AAM).
    ``hparams.compute_cost`` is ``LogSoftmaxWrapper(AdditiveAngularMargin(...))``;
    ``hparams.head_submodules`` names the encoder's embedding layer(s), trained alone with the
    classifier during the first phase (see :class:`~speechbrain_dino.schedules.FineTuneSchedule`).
    Batches carry ``sig`` ``[B, T]`` random crops and ``spk_id_encoded`` ``[B, 1]``.
    """

    trained_module_names = ["embedding_model", "classifier"]
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
        """LR, weight decay and AAM margin of this step; a frozen backbone also keeps its
        BatchNorm statistics (eval mode) during the first phase."""
        super().on_fit_batch_start(batch, should_step)
        set_aam_margin(self.hparams.compute_cost.loss_fn, self.current.margin)
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
        cosines = max_over_subcenters(self.modules.classifier(embeddings), self.hparams.subcenters)
        return cosines, embeddings

    def compute_objectives(self, predictions, batch, stage):
        """AAM-softmax loss; records training accuracy and the embedding spread."""
        cosines, embeddings = predictions
        targets = batch.spk_id_encoded.data
        loss = self.hparams.compute_cost(cosines, targets)
        if stage == sb.Stage.TRAIN:
            accuracy = (cosines.squeeze(1).argmax(dim=-1) == targets.view(-1)).float().mean()
            self.record({"accuracy": accuracy, "embedding_spread": embedding_spread(embeddings.detach())})
        return loss

    def before_optimizer_step(self) -> None:
        """First phase: the backbone gets no update (gradients dropped, so AdamW skips it)."""
        if self.current is not None and self.current.backbone_frozen:
            for parameter in self.backbone_parameters():
                parameter.grad = None

    def exported_encoder(self) -> nn.Module:
        """The fine-tuned encoder."""
        return unwrap_parallel(self.modules.embedding_model)
