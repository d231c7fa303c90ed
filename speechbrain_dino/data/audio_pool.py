"""A bounded, slowly refreshed pool of audio segments drawn from the files of a local folder.

Noise (MUSAN layout) and room impulse responses (RIRS_NOISES layout) are read through it, so a
100 h corpus costs a few MB of memory: only ``size`` segments are held, and a few are replaced on
every call.
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence

import torch

from speechbrain_dino.data.audio import AUDIO_EXTENSIONS, audio_info, load_audio
from speechbrain_dino.data.crops import circular_slices
from speechbrain_dino.errors import DataError, PathLike


def find_audio_files(folder: str, exclude_substring: Optional[str] = None) -> List[str]:
    """Sorted audio files anywhere below ``folder`` (by extension), optionally skipping names
    that contain ``exclude_substring``."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            if exclude_substring is not None and exclude_substring in name.lower():
                continue
            found.append(os.path.join(root, name))
    return found


def require_folder(folder: PathLike, role: str) -> str:
    """``folder`` as a string, or :class:`DataError` when it does not exist."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(f"{role} folder not found", folder)
    return folder


class AudioPool:
    """A bounded, slowly refreshed set of segments drawn from many audio files.

    ``size`` segments of at most ``segment_frames`` samples are held (zero-padded) in memory. The
    pool fills on first use; :meth:`refresh` replaces ``refresh_count`` random slots with new
    segments from random files, so long runs see the whole corpus without ever loading it.

    Arguments
    ---------
    files : list of str
        Candidate audio files.
    segment_frames : int
        Segment length ``S``.
    size, refresh_count : int
        Slots held, slots replaced per refresh.
    sample_rate : int
        Rate to resample the files to.
    prepare : callable, optional
        ``[S'] -> [S'']`` applied to each loaded segment (e.g. :func:`align_direct_path`).
        With it, segments start at the file's beginning; without, at a random position.
    """

    def __init__(
        self,
        files: Sequence[str],
        segment_frames: int,
        size: int,
        refresh_count: int,
        sample_rate: int,
        prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        self.files = list(files)
        self.segment_frames = segment_frames
        self.size = size
        self.refresh_count = refresh_count
        self.sample_rate = sample_rate
        self.prepare = prepare
        self.segments: Optional[torch.Tensor] = None
        self.lengths = torch.zeros(size, dtype=torch.long)

    def _load_slot(self, slot: int) -> None:
        path = self.files[int(torch.randint(len(self.files), (1,)))]
        file_frames = int(audio_info(path).duration * self.sample_rate)
        start = 0
        if self.prepare is None and file_frames > self.segment_frames:
            start = int(torch.randint(file_frames - self.segment_frames + 1, (1,)))
        segment = load_audio(
            path, self.sample_rate, resample=True, frame_offset=start, num_frames=self.segment_frames
        )
        if self.prepare is not None:
            segment = self.prepare(segment)
        self.segments[slot] = 0.0
        self.segments[slot, : segment.shape[0]] = segment
        self.lengths[slot] = segment.shape[0]

    def refresh(self) -> None:
        """Replaces ``refresh_count`` random slots (no-op before the pool is first filled)."""
        if self.segments is None:
            return
        for slot in torch.randperm(self.size)[: self.refresh_count].tolist():
            self._load_slot(slot)

    def _fill(self) -> None:
        if self.segments is None:
            self.segments = torch.zeros(self.size, self.segment_frames)
            for slot in range(self.size):
                self._load_slot(slot)

    def draw(self, count: int) -> torch.Tensor:
        """``count`` random whole segments ``[count, S]`` (zero-padded), starting at index 0."""
        self._fill()
        return self.segments[torch.randint(self.size, (count,))]

    def draw_tiled(self, count: int, frames: int, device: torch.device) -> torch.Tensor:
        """``count`` random segments ``[count, frames]`` on ``device``, each read from a random
        phase and tiled when shorter than ``frames``."""
        self._fill()
        slots = torch.randint(self.size, (count,))
        lengths = self.lengths[slots]
        offsets = (torch.rand(count) * lengths).long()
        return circular_slices(self.segments, lengths, offsets, frames, slots).to(device)
