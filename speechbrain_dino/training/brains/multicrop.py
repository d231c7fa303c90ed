"""The multi-crop path shared by the self-supervised Brains (DINO and the contrastive baseline).

Batches come from :func:`speechbrain_dino.data.crops.multicrop_pipeline`: ``global_crops``
``[B, G, Tg]`` and ``local_crops`` ``[B, L, Tl]``. Here the crops are stacked view-major
(``[G * B, Tg]``: view 0 of every utterance, then view 1, ...), the layout the losses expect,
augmented one by one and turned into features.
"""
from __future__ import annotations

import speechbrain as sb
import torch

from speechbrain_dino.training.brains.base import EncoderBrain


def views_to_rows(crops: torch.Tensor) -> torch.Tensor:
    """``[B, V, T]`` crops -> ``[V * B, T]`` view-major rows."""
    batch, views, frames = crops.shape
    return crops.transpose(0, 1).reshape(views * batch, frames)


class MultiCropBrain(EncoderBrain):
    """An :class:`EncoderBrain` trained on multi-crop batches (global and local crops).

    Subclasses implement ``compute_forward`` / ``compute_objectives`` on :meth:`crop_features`.
    """

    def crop_features(self, batch, stage: sb.Stage):
        """Multi-crop batch -> (global ``[G*B, frames, F]``, local ``[L*B, frames', F]``) features.

        Crops are stacked view-major and, during training, each is augmented independently.
        Crops padded by repetition (utterances shorter than a crop) are counted in the epoch log
        as ``padded_crops_per_batch``.
        """
        batch, batch_size = self.on_device(batch, stage)
        return tuple(
            self.features(self.augmented(views_to_rows(crops.data), stage, batch_size))
            for crops in (batch.global_crops, batch.local_crops)
        )

    def on_device(self, batch, stage: sb.Stage):
        """(the batch on this Brain's device, its number of utterances ``B``); counts the crops
        padded by repetition of a training batch."""
        batch = batch.to(self.device)
        if stage == sb.Stage.TRAIN:
            self.epoch_averages.add({"padded_crops_per_batch": sum(batch.n_padded_crops)})
        return batch, batch.global_crops.data.shape[0]
