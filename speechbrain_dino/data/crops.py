"""Random crops of an utterance: the DINO multi-crop views and the single crop of AAM training.

One utterance is read once (a bounded random window of it when it is long) and every crop is a
slice of that window in memory. All crops of one item are drawn in one tensor operation: with
offsets ``o[C]`` and crop length ``L``, crop ``c`` is ``window[(o[c] + arange(L)) % n]``. When the
window holds at least ``L`` samples the offsets lie in ``[0, n - L]`` and the modulo never wraps;
when it is shorter, the offset is a random phase in ``[0, n)`` and the modulo tiles the signal,
which is the repetition padding. Such crops are counted, per item, as ``n_padded_crops``.

Randomness comes from a ``torch.Generator`` when one is given (tests, reproducible tools) and from
torch's global generator otherwise. Use the global one inside a DataLoader: PyTorch seeds it per
worker (from the main process seed that ``speechbrain.utils.seed_everything`` sets), whereas a
generator stored in the pipeline would be copied into every worker with the same state, and all
workers would then draw the same crops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_dino.data.audio import load_audio


@dataclass(frozen=True)
class MultiCropSpec:
    """How many crops of which length each utterance gives (paper: 2 x 4 s + 4 x 2 s).

    Attributes
    ----------
    n_global, global_seconds : int, float
        Global crops (seen by teacher and student).
    n_local, local_seconds : int, float
        Local crops (seen by the student only).
    sample_rate : int
        Rate of the crops, in Hz.
    window_factor : float, optional
        An utterance longer than ``window_factor`` global crops is read only in a random window of
        that length, inside which all its crops are drawn (bounds the reading cost of long files,
        but makes crops of a long utterance overlap more). None: the whole utterance is read and
        crops are drawn from all of it.
    spread_global : bool
        Place the global crops apart: without overlap when the utterance holds ``n_global`` of
        them, otherwise with the largest equal gap it allows (False: independent uniform
        positions, as in the paper).
    """

    n_global: int = 2
    global_seconds: float = 4.0
    n_local: int = 4
    local_seconds: float = 2.0
    sample_rate: int = 16000
    window_factor: Optional[float] = 3.0
    spread_global: bool = False

    @property
    def global_frames(self) -> int:
        """Samples per global crop."""
        return seconds_to_frames(self.global_seconds, self.sample_rate)

    @property
    def local_frames(self) -> int:
        """Samples per local crop."""
        return seconds_to_frames(self.local_seconds, self.sample_rate)


def seconds_to_frames(seconds: float, sample_rate: int) -> int:
    """Crop length in samples (rounded to the nearest sample, at least 1)."""
    return max(1, int(round(seconds * sample_rate)))


def random_window_start(
    num_frames: int, window_frames: int, generator: Optional[torch.Generator] = None
) -> int:
    """Uniform start of a ``window_frames`` window in ``num_frames`` samples (0 if it does not fit)."""
    if num_frames <= window_frames:
        return 0
    return int(torch.randint(num_frames - window_frames + 1, (1,), generator=generator))


def read_window(
    path: str,
    num_frames: int,
    window_frames: int,
    sample_rate: int = 16000,
    resample: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Reads a whole utterance, or a random ``window_frames`` window of it when it is longer.

    Arguments
    ---------
    path : str
        Audio file.
    num_frames : int
        Length of the utterance in samples (from the manifest's duration; the crops use the
        length actually read, so a slightly wrong duration is harmless).
    window_frames : int
        Longest span to read.

    Returns
    -------
    torch.Tensor
        ``[W]`` with ``W <= max(window_frames, num_frames)``.
    """
    if num_frames <= window_frames:
        return load_audio(path, sample_rate=sample_rate, resample=resample)
    start = random_window_start(num_frames, window_frames, generator)
    return load_audio(
        path, sample_rate=sample_rate, resample=resample, frame_offset=start, num_frames=window_frames
    )


def circular_slices(
    signals: torch.Tensor,
    lengths: torch.Tensor,
    offsets: torch.Tensor,
    frames: int,
    rows: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Output row ``k`` is ``signals[rows[k]]`` read from ``offsets[k]`` for ``frames`` samples,
    wrapping around at ``lengths[k]`` (so a signal shorter than ``frames`` comes out tiled).

    Arguments
    ---------
    signals : torch.Tensor
        ``[R, W]`` signals, zero-padded.
    lengths : torch.Tensor
        ``[K]`` valid samples of each output row's signal, ``1 <= lengths[k] <= W``.
    offsets : torch.Tensor
        ``[K]`` start positions.
    frames : int
        Output length ``F``.
    rows : torch.Tensor, optional
        ``[K]`` signal of each output row (default: row ``k`` of ``signals``, with ``K = R``).

    Returns
    -------
    torch.Tensor
        ``[K, F]``; only the samples read are gathered (no copy of whole signals).
    """
    if rows is None:
        rows = torch.arange(signals.shape[0], device=signals.device)
    positions = offsets.unsqueeze(1) + torch.arange(frames, device=signals.device)
    return signals[rows.unsqueeze(1), positions % lengths.unsqueeze(1)]


def slices_of(signal: torch.Tensor, offsets: torch.Tensor, frames: int) -> torch.Tensor:
    """``[C, frames]`` slices of one ``[W]`` signal from ``offsets`` ``[C]`` (tiled past its end)."""
    count = offsets.shape[0]
    lengths = torch.full((count,), signal.shape[0], dtype=torch.long)
    return circular_slices(signal.unsqueeze(0), lengths, offsets, frames, torch.zeros(count, dtype=torch.long))


def sample_crops(
    signal: torch.Tensor,
    crop_frames: int,
    count: int,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, int]:
    """Draws ``count`` crops at independent uniform positions, tiling a signal that is too short.

    Arguments
    ---------
    signal : torch.Tensor
        ``[W]`` samples, ``W >= 1``.
    crop_frames : int
        Crop length ``L``.
    count : int
        Number of crops ``C``.

    Returns
    -------
    crops : torch.Tensor
        ``[C, L]``, each a contiguous slice of ``signal`` or, when ``W < L``, of ``signal``
        repeated, starting at a random phase.
    n_padded : int
        ``C`` when the signal had to be tiled, else 0.
    """
    available = signal.shape[0]
    padded = available < crop_frames
    offset_range = available if padded else available - crop_frames + 1
    offsets = torch.randint(offset_range, (count,), generator=generator)
    return slices_of(signal, offsets, crop_frames), count if padded else 0


def sample_spread_crops(
    signal: torch.Tensor,
    crop_frames: int,
    count: int,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, int]:
    """Like :func:`sample_crops`, but consecutive crops start at least a gap apart.

    With ``W`` samples and ``C`` crops of ``L``, the gap is ``g = min(L, (W - L) // (C - 1))``:
    sorted offsets ``u_(k) + k g`` with ``u`` uniform in ``[0, W - L - (C - 1) g]`` are a uniform
    draw among placements whose neighbours start ``g`` apart, so the crops never overlap when
    ``W >= C L``. The crops are returned in random order. A signal shorter than ``L`` is tiled
    as in :func:`sample_crops`.

    Returns
    -------
    crops : torch.Tensor
        ``[C, L]``.
    n_padded : int
        ``C`` when the signal had to be tiled, else 0.
    """
    available = signal.shape[0]
    if count < 2 or available < crop_frames:
        return sample_crops(signal, crop_frames, count, generator)
    gap = min(crop_frames, (available - crop_frames) // (count - 1))
    free = available - crop_frames - (count - 1) * gap
    starts = torch.randint(free + 1, (count,), generator=generator).sort().values
    offsets = starts + gap * torch.arange(count)
    offsets = offsets[torch.randperm(count, generator=generator)]
    return slices_of(signal, offsets, crop_frames), 0


def multicrop_pipeline(
    spec: MultiCropSpec,
    resample: bool = False,
    generator: Optional[torch.Generator] = None,
):
    """Dynamic item ``(wav, duration) -> (global_crops, local_crops, n_padded_crops)``.

    ``global_crops`` is ``[G, Tg]``, ``local_crops`` ``[L, Tl]`` (float32) and ``n_padded_crops`` an
    int. Every item has the same shapes, so ``PaddedBatch`` stacks them into ``[B, G, Tg]`` and
    ``[B, L, Tl]`` with relative lengths all 1, and ``n_padded_crops`` into a ``[B]`` int tensor.
    ``generator``: see the module docstring (leave None inside a DataLoader).
    """
    if spec.window_factor is None:
        window_frames = None
    else:
        window_frames = math.ceil(spec.window_factor * max(spec.global_frames, spec.local_frames))
    sample_global = sample_spread_crops if spec.spread_global else sample_crops

    @takes("wav", "duration")
    @provides("global_crops", "local_crops", "n_padded_crops")
    def multicrop(wav: str, duration: float) -> Iterator[object]:
        num_frames = int(float(duration) * spec.sample_rate)
        window = num_frames if window_frames is None else window_frames
        signal = read_window(wav, num_frames, window, spec.sample_rate, resample, generator)
        global_crops, global_padded = sample_global(signal, spec.global_frames, spec.n_global, generator)
        local_crops, local_padded = sample_crops(signal, spec.local_frames, spec.n_local, generator)
        yield global_crops
        yield local_crops
        yield global_padded + local_padded

    return multicrop


def random_crop_pipeline(
    seconds: float,
    sample_rate: int = 16000,
    resample: bool = False,
    generator: Optional[torch.Generator] = None,
):
    """Dynamic item ``(wav, duration) -> (sig, n_padded_crops)``: one random ``[T]`` crop.

    Only the crop's own span is read from the file; a shorter utterance is tiled to ``T``
    (``n_padded_crops`` is then 1). ``generator``: see the module docstring.
    """
    crop_frames = seconds_to_frames(seconds, sample_rate)

    @takes("wav", "duration")
    @provides("sig", "n_padded_crops")
    def random_crop(wav: str, duration: float) -> Iterator[object]:
        num_frames = int(float(duration) * sample_rate)
        signal = read_window(wav, num_frames, crop_frames, sample_rate, resample, generator)
        crops, n_padded = sample_crops(signal, crop_frames, 1, generator)
        yield crops[0]
        yield n_padded

    return random_crop
