"""Audio reading with clear errors: the only place the project opens audio files.

Reads go through SpeechBrain's soundfile-based ``audio_io`` (``torchaudio.load`` is not usable
with torchaudio 2.11). A file that is missing, unreadable, empty or at an unexpected sample rate
raises :class:`DataError` naming the file, never a traceback from the decoder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torchaudio.functional
from speechbrain.dataio import audio_io

from speechbrain_dino.errors import DataError, PathLike, first_line

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".sph")


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says."""

    num_frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.sample_rate


def audio_info(path: PathLike) -> AudioInfo:
    """Read an audio file's header.

    Raises
    ------
    DataError
        The file is missing, cannot be decoded, or holds no samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("audio file not found", path)
    try:
        info = audio_io.info(path)
    except Exception as error:  # the decoder's own exception types vary by format
        raise DataError(f"cannot read audio ({first_line(error)})", path) from None
    if info.frames <= 0 or info.sample_rate <= 0:
        raise DataError("audio file is empty", path)
    return AudioInfo(int(info.frames), int(info.sample_rate), int(info.channels))


def load_audio(
    path: PathLike,
    sample_rate: int = 16000,
    resample: bool = False,
    frame_offset: int = 0,
    num_frames: int = -1,
) -> torch.Tensor:
    """Load (part of) an audio file as a mono float waveform at ``sample_rate``.

    Arguments
    ---------
    path : PathLike
        Audio file in any format soundfile reads (wav, flac, ogg, ...).
    sample_rate : int
        The rate the caller works at.
    resample : bool
        Resample files at another rate; when False such a file is an error.
    frame_offset, num_frames : int
        Segment to read, in samples **at the target rate** (``num_frames=-1``: to the end).

    Returns
    -------
    torch.Tensor
        ``[T]`` float32, channels averaged.

    Raises
    ------
    DataError
        Missing, unreadable or empty file, wrong sample rate with ``resample=False``, or a
        segment that starts past the end of the file.
    """
    path = os.fspath(path)
    info = audio_info(path)
    native_offset, native_frames = frame_offset, num_frames
    if info.sample_rate != sample_rate:
        if not resample:
            raise DataError(
                f"sample rate is {info.sample_rate} Hz, expected {sample_rate} Hz: pass --resample=True "
                "to the recipe (files are then resampled as they are read), or resample the corpus",
                path,
            )
        ratio = info.sample_rate / sample_rate
        native_offset = int(frame_offset * ratio)
        native_frames = -1 if num_frames < 0 else int(round(num_frames * ratio))
    if native_offset >= info.num_frames:
        raise DataError(
            f"segment starts at sample {native_offset} but the file has {info.num_frames}",
            path,
        )
    try:
        signal, _ = audio_io.load(
            path, frame_offset=native_offset, num_frames=native_frames, dtype=torch.float32
        )
    except Exception as error:
        raise DataError(f"cannot decode audio ({first_line(error)})", path) from None
    signal = signal[0] if signal.shape[0] == 1 else signal.mean(dim=0)
    if info.sample_rate != sample_rate:
        signal = torchaudio.functional.resample(signal, info.sample_rate, sample_rate)
        if num_frames >= 0:
            signal = signal[:num_frames]
    if signal.numel() == 0:
        raise DataError("audio segment is empty", path)
    return signal
