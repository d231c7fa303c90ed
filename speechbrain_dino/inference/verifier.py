"""SpeechBrain's ``SpeakerRecognition``, deciding at the threshold the exported folder records.

    from speechbrain_dino import SpeakerVerifier
    verifier = SpeakerVerifier.from_hparams(source="exp/round1/aam/pretrained")
    score, same = verifier.verify_files("a.wav", "b.wav")            # at the recorded threshold
    score, same = verifier.verify_files("a.wav", "b.wav", threshold=0.7)
    scores, same = verifier.verify_batch(wavs1, wavs2, wav1_lens, wav2_lens)

SpeechBrain 1.1.2's ``SpeakerRecognition.verify_files`` always decides at ``verify_batch``'s
default 0.25, which accepts nearly every pair of this project's embeddings. The folder's
``hyperparams.yaml`` records ``verification_threshold`` and ``threshold_source``
(:mod:`speechbrain_dino.inference.export`): :class:`SpeakerVerifier` decides at it, an explicit
``threshold=`` overrides it, and without either it stops with one line saying how to get one.
Scores and embeddings are SpeechBrain's own (``encode_batch``, cosine).
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Optional, Tuple

import torch
from speechbrain.inference.speaker import SpeakerRecognition

from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.inference.embeddings import checked_pretrained_folder
from speechbrain_dino.inference.export import (
    LEGACY_THRESHOLD_SOURCE,
    NO_THRESHOLD_HELP,
    THRESHOLD_KEY,
    THRESHOLD_SOURCE_KEY,
    DecisionThreshold,
)


class SpeakerVerifier(SpeakerRecognition):
    """``SpeakerRecognition`` whose decisions use the folder's recorded threshold.

    Load it like its parent, ``SpeakerVerifier.from_hparams(source=FOLDER[, savedir=...])``, from
    any folder this project exports (``<output_folder>/pretrained``).
    """

    @classmethod
    def from_hparams(cls, source: PathLike, hparams_file: str = "hyperparams.yaml", savedir: Optional[PathLike] = None,
                     **kwargs: Any) -> "SpeakerVerifier":
        """Loads an exported folder offline.

        ``source`` must be an existing folder with ``hyperparams.yaml`` (SpeechBrain would take any
        other string for a Hugging Face hub id and go to the network). Without ``savedir`` the
        model is loaded through a fresh temporary one, since SpeechBrain silently reuses whatever
        model a savedir already holds.

        Raises
        ------
        DataError
            ``source`` is not an exported encoder folder.
        """
        folder = checked_pretrained_folder(source)
        if savedir is not None:
            return super().from_hparams(source=folder, hparams_file=hparams_file, savedir=os.fspath(savedir), **kwargs)
        with tempfile.TemporaryDirectory(prefix="sbdino-verifier-") as scratch:  # weights end up in memory
            return super().from_hparams(source=folder, hparams_file=hparams_file, savedir=scratch, **kwargs)

    @property
    def recorded_threshold(self) -> Optional[DecisionThreshold]:
        """The threshold ``hyperparams.yaml`` records, with its source (None when it records none)."""
        value = getattr(self.hparams, THRESHOLD_KEY, None)
        if value is None:
            return None
        return DecisionThreshold(float(value), getattr(self.hparams, THRESHOLD_SOURCE_KEY, LEGACY_THRESHOLD_SOURCE))

    def decision_threshold(self, threshold: Optional[float] = None) -> float:
        """``threshold`` when given, else the recorded one.

        Raises
        ------
        DataError
            Neither exists (the message says how to get one).
        """
        if threshold is not None:
            return float(threshold)
        recorded = self.recorded_threshold
        if recorded is None:
            raise DataError(NO_THRESHOLD_HELP)
        return recorded.value

    def verify_batch(self, wavs1: torch.Tensor, wavs2: torch.Tensor, wav1_lens: Optional[torch.Tensor] = None,
                     wav2_lens: Optional[torch.Tensor] = None,
                     threshold: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Cosine scores ``[B, 1]`` of two waveform batches ``[B, T]`` and the decisions (score >
        :meth:`decision_threshold`), as ``SpeakerRecognition.verify_batch``."""
        return super().verify_batch(wavs1, wavs2, wav1_lens, wav2_lens, threshold=self.decision_threshold(threshold))

    def verify_files(self, path_x: PathLike, path_y: PathLike, threshold: Optional[float] = None,
                     **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        """Score and decision for two audio files (other keyword arguments go to ``load_audio``).

        Raises
        ------
        DataError
            A file is missing, or there is no threshold (:meth:`decision_threshold`).
        """
        decision_threshold = self.decision_threshold(threshold)
        for path in (path_x, path_y):
            if not os.path.isfile(os.fspath(path)):
                raise DataError("no such audio file", path)
        batch_x = self.load_audio(os.fspath(path_x), **kwargs).unsqueeze(0)
        batch_y = self.load_audio(os.fspath(path_y), **kwargs).unsqueeze(0)
        score, decision = self.verify_batch(batch_x, batch_y, threshold=decision_threshold)
        return score[0], decision[0]
