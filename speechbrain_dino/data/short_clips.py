"""The shortest clip the encoders take, and what every stage does with a shorter one.

ECAPA-TDNN's convolutions pad their input by reflection, which needs more feature frames than the
widest padding (5 frames for the default dilations): a clip of 0.02 s (3 frames) fails inside
torch. :data:`MIN_CLIP_SECONDS` (0.1 s, 11 frames) is the project's floor, with one behaviour per
stage:

- data preparation skips shorter files (``too_short`` in its report);
- training (DINO, contrastive, AAM) leaves shorter manifest rows out, with one logged count
  (:func:`drop_short_rows`): their crops would be nearly all padding;
- embedding extraction (pseudo-labels, evaluations, validation) zero-pads a batch shorter than the
  floor and marks the padding in the lengths (:func:`pad_to_minimum`), so every row gets an
  embedding;
- an exported ``pretrained/`` computes its features with :class:`MinimumLengthFbank`, SpeechBrain's
  ``Fbank`` that zero-pads a shorter input, so ``EncoderClassifier.encode_batch`` takes any clip.

Clips at least :data:`MIN_CLIP_SECONDS` long are untouched everywhere.
"""
from __future__ import annotations

import logging
from typing import List, Sequence, Tuple

import torch
from speechbrain.lobes.features import Fbank

from speechbrain_dino.data.manifest import Row
from speechbrain_dino.errors import PathLike

logger = logging.getLogger(__name__)

#: The shortest clip every stage handles as it is (seconds).
MIN_CLIP_SECONDS = 0.1


def min_samples(sample_rate: int) -> int:
    """:data:`MIN_CLIP_SECONDS` in samples at ``sample_rate``."""
    return int(round(MIN_CLIP_SECONDS * sample_rate))


def pad_to_minimum(
    wavs: torch.Tensor, lengths: torch.Tensor, sample_rate: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """A ``[B, T]`` batch zero-padded to at least :func:`min_samples`, relative lengths rescaled
    so that they still mark each row's own samples (unchanged when ``T`` is long enough)."""
    target = min_samples(sample_rate)
    frames = wavs.shape[-1]
    if frames >= target:
        return wavs, lengths
    padded = torch.nn.functional.pad(wavs, (0, target - frames))
    return padded, lengths * (frames / target)


def drop_short_rows(rows: Sequence[Row], path: PathLike) -> List[Row]:
    """The rows at least :data:`MIN_CLIP_SECONDS` long; logs how many were left out."""
    kept = [row for row in rows if float(row["duration"]) >= MIN_CLIP_SECONDS]
    if len(kept) < len(rows):
        logger.warning(
            f"{path}: left out {len(rows) - len(kept)} utterance(s) shorter than {MIN_CLIP_SECONDS} s "
            "(the encoder's shortest input)"
        )
    return kept


class MinimumLengthFbank(Fbank):
    """SpeechBrain's ``Fbank`` that first zero-pads a waveform batch shorter than
    :data:`MIN_CLIP_SECONDS` (identical output for longer ones); same arguments as ``Fbank``."""

    def __init__(self, sample_rate: int = 16000, **kwargs) -> None:
        super().__init__(sample_rate=sample_rate, **kwargs)
        self.min_samples = min_samples(sample_rate)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, frames, n_mels]``, ``T`` padded to the minimum first.

        Written without a branch on ``T`` (``torch.sym_max``; a zero-width pad otherwise), so that
        an exported graph (:mod:`speechbrain_dino.inference.onnx_export`) pads any short input."""
        samples = wav.shape[-1]
        wav = torch.nn.functional.pad(wav, (0, torch.sym_max(samples, self.min_samples) - samples))
        return super().forward(wav)
