"""The base of the project's Brains, and its overrides of SpeechBrain's internals.

Every Brain here trains an utterance encoder (SpeechBrain's ECAPA-TDNN by default) on waveforms:
Fbank -> sentence mean normalisation -> encoder -> ``[B, 1, D]`` embedding. :class:`EncoderBrain`
holds what all of them need: feature extraction and augmentation, the per-step LR / weight-decay
schedule, per-epoch statistics, optional validation EER, checkpointing and the ``pretrained/``
export; and five overrides of ``speechbrain.Brain``: DDP on CPU without SyncBatchNorm (gloo),
gradient clipping (per tensor, as the DINO reference) over every parameter group, a training
loader with its own generator (exact mid-epoch resume), recovery from an end-of-epoch checkpoint
that starts the next epoch's step count and running loss afresh, and preemption: SIGTERM or
SIGUSR1 during ``fit`` stops the run after the current optimiser step with a checkpoint
(:mod:`~speechbrain_dino.training.preemption`).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Mapping, Optional

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from speechbrain_dino.errors import DataError, Preempted
from speechbrain_dino.inference.export import Architecture, export_pretrained
from speechbrain_dino.training.clipping import clip_gradients_
from speechbrain_dino.training.epoch_stats import EpochAverages
from speechbrain_dino.training.parameters import param_groups_for_weight_decay, unwrap_parallel
from speechbrain_dino.training.preemption import PreemptionWatch
from speechbrain_dino.training.rank_monitor import EffectiveRankMonitor
from speechbrain_dino.training.rng import decorrelate_ranks
from speechbrain_dino.training.schedules import DINOSchedule
from speechbrain_dino.training.snapshots import SnapshotPlan

logger = logging.getLogger(__name__)


def embedding_spread(embeddings: torch.Tensor) -> torch.Tensor:
    """Std across the batch of L2-normalised embeddings, times sqrt(D): ~1 healthy, 0 collapsed.

    Arguments
    ---------
    embeddings : torch.Tensor
        ``[N, D]`` or ``[N, 1, D]``.
    """
    flat = nn.functional.normalize(embeddings.reshape(embeddings.shape[0], -1).float(), dim=-1)
    return flat.std(dim=0).mean() * math.sqrt(flat.shape[-1])


@sb.utils.checkpoints.register_checkpoint_hooks
class EncoderBrain(sb.Brain):
    """Base of the project's Brains: features, schedule, clipping, stats, validation, export.

    Expected ``modules``: ``compute_features``, ``mean_var_norm``, the trained encoder and heads,
    optionally ``augment`` (a waveform augmenter applied to training waveforms).
    Expected ``hparams``: ``schedule`` (``DINOSchedule`` arguments, see :meth:`build_schedule`),
    ``number_of_epochs``, ``train_logger``, and optionally ``validator``
    (:class:`~speechbrain_dino.verification.validation.TrialValidator`), ``threshold_estimator``
    (:class:`~speechbrain_dino.inference.threshold_estimate.ClusterThresholdEstimator`), ``ckpts_to_keep``.
    Subclasses define :attr:`trained_module_names` and :attr:`exported_module`.
    """

    #: Modules whose parameters the optimiser updates.
    trained_module_names: List[str] = []
    #: The module whose embeddings this training produces (exported, validated).
    exported_module: str = ""
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
        self.rank_monitor = EffectiveRankMonitor()
        #: Exports at chosen optimiser steps (set before ``fit``; see :mod:`~speechbrain_dino.training.snapshots`).
        self.snapshots: Optional[SnapshotPlan] = None
        self.preemption = PreemptionWatch()
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("epoch_averages", self.epoch_averages, optional_load=True)
            self.checkpointer.add_recoverable("rank_monitor", self.rank_monitor, optional_load=True)

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch) -> None:
        """SpeechBrain's recovery of ``step`` and ``avg_train_loss``, which an end-of-epoch
        checkpoint holds for the finished epoch: the next epoch starts them from zero (as an
        uninterrupted run does), so its logged loss is its own."""
        super()._recover(path, end_of_epoch)
        if end_of_epoch:
            self.step = 0
            self.avg_train_loss = 0.0

    # ----------------------------------------------------------------- set-up
    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """Also records the number of optimiser steps per epoch (after DDP sharding), and refuses
        a training set too small for one step (``drop_last`` would train nothing and export an
        untrained encoder).

        The training loader gets its own ``torch.Generator``: creating a loader iterator draws a
        worker seed from it instead of from the global generator that crops and augmentation use,
        so a run resumed mid-epoch continues on exactly the random stream of an uninterrupted run
        (exactly with ``num_workers: 0``; worker processes restart with new seeds otherwise).
        """
        if stage == sb.Stage.TRAIN and "generator" not in loader_kwargs:
            loader_kwargs["generator"] = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            if len(loader) // self.grad_accumulation_factor == 0:
                raise DataError(
                    f"no training step per epoch: {len(dataset)} training utterances, batch_size "
                    f"{loader_kwargs.get('batch_size')} per process with drop_last "
                    f"(x{self.grad_accumulation_factor} accumulation, DDP shards the data): lower --batch_size"
                )
            self.steps_per_epoch = len(loader) // self.grad_accumulation_factor
        return loader

    def build_schedule(self):
        """The per-step schedule (``schedule_class``) from ``hparams.schedule``, epochs -> steps.

        A schedule that sets ``lr_per_256`` (the linear scaling rule) also gets the global batch
        size: per-process batch x world size x gradient accumulation.
        """
        if self.steps_per_epoch is None:
            raise RuntimeError("the schedule needs the training loader (call fit())")
        settings = dict(self.hparams.schedule)
        if "lr_per_256" in settings:
            world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
            batch_size = self.hparams.train_dataloader_opts["batch_size"]
            settings["global_batch_size"] = batch_size * world * self.grad_accumulation_factor
        return self.schedule_class.from_epochs(
            epochs=self.hparams.number_of_epochs, steps_per_epoch=self.steps_per_epoch, **settings
        )

    def init_optimizers(self) -> None:
        """One optimiser over the trained modules, no weight decay on biases and norms."""
        modules = [self.modules[name] for name in self.trained_module_names]
        groups = param_groups_for_weight_decay(modules, self.hparams.schedule.get("weight_decay", 0.0))
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def fit(self, *args, **kwargs) -> None:
        """SpeechBrain's ``fit``, stopped by a preemption signal after the step it came in
        (:meth:`_should_save_intra_epoch_ckpt`); one that came after the last look is delivered
        again once training is over."""
        with self.preemption:
            super().fit(*args, **kwargs)
        self.preemption.deliver_pending()

    def on_fit_start(self) -> None:
        """Builds the schedule, gives each DDP rank its own random stream
        (:func:`~speechbrain_dino.training.rng.decorrelate_ranks`), then SpeechBrain's start (DDP
        wrap, optimiser, recovery, which restores each rank's stream of a resumed run)."""
        self.schedule = self.build_schedule()
        decorrelate_ranks()
        super().on_fit_start()

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

    # ------------------------------------------------------------ preemption
    def _should_save_intra_epoch_ckpt(self, last_ckpt_time: float, steps_since_ckpt: int) -> bool:
        """SpeechBrain's checkpoint interval, or a preemption signal received by any rank
        (looked at after each optimiser step, on every rank)."""
        if self.step % self.grad_accumulation_factor == 0 and self.preemption.agreed():
            return True
        return super()._should_save_intra_epoch_ckpt(last_ckpt_time, steps_since_ckpt)

    def _save_intra_epoch_ckpt(self) -> None:
        """SpeechBrain's intra-epoch checkpoint; then stops a preempted run."""
        super()._save_intra_epoch_ckpt()
        self.stop_if_preempted()

    def stop_if_preempted(self) -> None:
        """Raises :class:`~speechbrain_dino.errors.Preempted` once the ranks agreed on a signal
        (the checkpoint is saved)."""
        if self.preemption.stopping:
            received = self.preemption.received.name if self.preemption.received else "a signal to another process"
            raise Preempted(
                f"{received} during training: stopped after optimiser step {self.optimizer_step} and saved a "
                f"checkpoint in {self.checkpointer.checkpoints_dir}; rerun the same command to resume"
            )

    # ------------------------------------------------------------ per batch
    def features(self, wavs: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` equal-length crops -> normalised filterbanks ``[N, frames, n_mels]``."""
        lengths = torch.ones(wavs.shape[0], device=wavs.device)
        return self.modules.mean_var_norm(self.modules.compute_features(wavs), lengths)

    def augmented(
        self, wavs: torch.Tensor, stage: sb.Stage, batch_size: int, augmenter: str = "augment"
    ) -> torch.Tensor:
        """``[N, T]`` waveforms, each augmented independently during training (else unchanged).

        Row ``i`` belongs to utterance ``i % batch_size`` (``N = V * B`` view-major crops, or
        ``N = B`` single crops), so in-batch babble never mixes in another crop of the same
        utterance. ``augmenter`` names the module (``augment``, or e.g. a milder one for the
        teacher's crops). Runs in float32 outside autocast (FFT convolutions).
        """
        if stage != sb.Stage.TRAIN or augmenter not in self.modules:
            return wavs
        rows = torch.arange(wavs.shape[0], device=wavs.device)
        with torch.autocast(device_type=self.device_type, enabled=False):
            return self.modules[augmenter](
                wavs.float(), torch.ones(wavs.shape[0], device=wavs.device), rows % batch_size
            )

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        """Sets LR and weight decay for this optimiser step."""
        self.current = self.schedule.apply(self.optimizer, self.optimizer_step)

    def drop_frozen_gradients(self) -> None:
        """Hook before gradient clipping: drop the gradients of parameters this step does not
        train (as if they were frozen, so they count in no clipping norm)."""

    def before_optimizer_step(self) -> None:
        """Hook between gradient clipping and the optimiser step (gradients unscaled, clipped)."""

    @property
    def gradient_clipping(self) -> str:
        """``hparams.gradient_clipping``: ``per_tensor`` (default, the DINO reference code) or
        ``global`` (one factor for all gradients, as SpeechBrain's Brain)."""
        return getattr(self.hparams, "gradient_clipping", "per_tensor")

    def optimizers_step(self) -> None:
        """Unscale, drop frozen gradients, clip (every parameter group, :attr:`gradient_clipping`),
        subclass hook, step.

        The order around clipping is the DINO reference's: clip, then :meth:`before_optimizer_step`
        (which may cancel the frozen last layer's gradients), then step. SpeechBrain's version
        clips only the first parameter group's global norm, which would leave the undecayed biases
        and norms unclipped. The share of gradient tensors (or, clipping globally, of steps) the
        clip scaled is logged per epoch (``clipped_share``).
        """
        self.scaler.unscale_(self.optimizer)
        self.drop_frozen_gradients()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.max_grad_norm > 0:
            norms = clip_gradients_(parameters, self.max_grad_norm, self.gradient_clipping)
            if len(norms):
                self.epoch_averages.add({"clipped_share": (norms > self.max_grad_norm).float().mean()})
        self.before_optimizer_step()
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def on_fit_batch_end(self, batch, outputs, loss, should_step: bool) -> None:
        """After an optimiser step that :attr:`snapshots` names: export the encoder as it is now
        (on the main process; the other ranks wait)."""
        if should_step and self.snapshots is not None and self.optimizer_step in self.snapshots.steps:
            run_on_main(self.export, kwargs=self.snapshots.export_arguments(self.optimizer_step))

    def record(self, stats: Dict[str, torch.Tensor], embeddings: torch.Tensor) -> None:
        """Adds one training batch's diagnostics to the epoch averages, with the spread of its
        ``[N, D]`` (or ``[N, 1, D]``) embeddings, and the embeddings to the epoch's effective-rank
        sample (both checkpointed with the run)."""
        embeddings = embeddings.detach()
        self.epoch_averages.add_batch({**stats, "embedding_spread": embedding_spread(embeddings)})
        self.rank_monitor.add(embeddings)

    # ------------------------------------------------------------- per epoch
    def on_stage_start(self, stage, epoch=None) -> None:
        """Starts the epoch's averages (kept when resuming mid-epoch)."""
        if stage == sb.Stage.TRAIN:
            self.epoch_averages.start_epoch()
            self.rank_monitor.start_epoch()

    def on_stage_end(self, stage, stage_loss, epoch=None) -> None:
        """Logs the epoch (loss, diagnostics, schedule values, validation EER) and checkpoints;
        stops a run preempted meanwhile."""
        if stage != sb.Stage.TRAIN:
            return
        train_stats = {"loss": stage_loss}
        train_stats.update(self.epoch_averages.averages())
        train_stats.update(self.rank_monitor.summary())
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
        if self.preemption.agreed():  # a signal during the epoch's end: it is checkpointed
            self.stop_if_preempted()

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
        metrics = validator(self.embedding_modules(), self.device)
        return {key: metrics[key] for key in ("EER", "minDCF_0.01")}

    def embedding_modules(self) -> Dict[str, nn.Module]:
        """The front end and :meth:`exported_encoder`: what an exported model embeds with."""
        return {
            "compute_features": self.modules.compute_features,
            "mean_var_norm": self.modules.mean_var_norm,
            "embedding_model": self.exported_encoder(),
        }

    # ---------------------------------------------------------------- export
    @classmethod
    def exported_module_for(cls, hparams: Mapping[str, Any]) -> str:
        """The key of the module that a run of this class with ``hparams`` exports
        (:attr:`exported_module` unless a subclass lets the YAML choose)."""
        return cls.exported_module

    def exported_encoder(self) -> nn.Module:
        """The encoder whose embeddings this training produces (:meth:`exported_module_for`,
        unwrapped from DDP)."""
        return unwrap_parallel(self.modules[self.exported_module_for(vars(self.hparams))])

    def export(self, folder: str, architecture: Architecture, metadata: Optional[dict] = None) -> str:
        """Writes ``folder`` (``pretrained/``) loadable by ``EncoderClassifier.from_hparams``.

        ``architecture`` describes :meth:`exported_encoder` (what re-creates it). The folder also
        records a decision threshold scored with the exported encoder: with a ``validator``, at the
        EER point of its trials; else, with a ``threshold_estimator`` (AAM fine-tuning), the
        estimate from the training clusters
        (:class:`~speechbrain_dino.inference.threshold_estimate.ClusterThresholdEstimator`).
        """
        info = {"stage": type(self).__name__, "optimizer_steps": self.optimizer_step}
        info.update(metadata or {})
        source = getattr(self.hparams, "validator", None) or getattr(self.hparams, "threshold_estimator", None)
        threshold = None if source is None else source.decision_threshold(self.embedding_modules(), self.device)
        return export_pretrained(folder, self.exported_encoder(), architecture, metadata=info, threshold=threshold)
