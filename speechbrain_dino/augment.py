"""Additive noise and reverberation for a batch of crops, with per-sample random decisions.

:class:`SpeechAugment` follows the paper's recipe: each waveform is independently reverberated
(probability 0.45) and then mixed with noise (probability 0.7) from one of the categories
``noise`` (0-18 dB SNR), ``music`` (3-18 dB) and ``babble`` (3-18 dB, several talkers summed).

Sources, from local folders (nothing is ever downloaded):

- ``noise_folder`` in MUSAN layout: ``noise/``, ``music/`` and ``speech/`` (babble) subfolders, any
  audio format, any depth. Only a bounded :class:`AudioPool` of random segments is held in memory
  and a few of them are replaced on every call, so a 100 h corpus costs a few MB. A subfolder
  without audio drops ``music``, or falls back to the generated source for ``noise`` / ``babble``.
- ``rir_folder`` in RIRS_NOISES layout (``simulated_rirs/*/Room*/*.wav``,
  ``real_rirs_isotropic_noises/*.wav``): every audio file below it whose name does not contain
  "noise" (that folder also ships isotropic and point-source noises).

Without folders: coloured noise (white, pink or brown, shaped in the FFT domain) for ``noise``,
babble summed from other utterances of the same batch, no ``music``, and synthetic RIRs
(exponentially decaying noise tail with random RT60, sparse early reflections, unit direct path).

Why not SpeechBrain's ``AddNoise`` / ``AddReverb``: they make one decision per batch (every row gets
noise; one RIR for the whole batch), ``AddNoise`` reads whole noise files through its own
DataLoader on every call and rescales the clean signal, and neither has a per-category SNR. The
mixing here is a few lines of batched tensor code instead.

Everything runs on the device of the input; only pool refreshes touch the disk.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from speechbrain_dino.audio import AUDIO_EXTENSIONS, audio_info, load_audio
from speechbrain_dino.crops import circular_slices
from speechbrain_dino.errors import DataError, PathLike

NOISE_CATEGORIES = ("noise", "music", "babble")
MUSAN_SUBFOLDERS = {"noise": "noise", "music": "music", "babble": "speech"}
NOISE_EXPONENTS = (0.0, 1.0, 2.0)  # spectral slope 1/f^a: white, pink, brown
DECAY_60_DB = math.log(1000.0)  # amplitude decay constant: exp(-DECAY_60_DB) = -60 dB


def valid_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``[N, T]`` bool mask of the valid samples, from relative ``lengths [N]``."""
    valid = (lengths * frames).round().clamp(1, frames)
    return torch.arange(frames, device=lengths.device) < valid.unsqueeze(1)


def mean_power(wavs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` mean square of ``wavs [N, T]`` over the ``mask [N, T]`` samples."""
    return (wavs.square() * mask).sum(1) / mask.sum(1).clamp(min=1)


def add_at_snr(
    clean: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``clean + g * noise`` with ``g [N]`` such that each row reaches ``snr_db [N]``.

    Both powers are measured over the valid samples (``mask [N, T]``); noise in the padding is
    dropped. A silent clean row stays silent.
    """
    noise = noise * mask
    target_noise_power = mean_power(clean, mask) / 10.0 ** (snr_db / 10.0)
    gain = (target_noise_power / mean_power(noise, mask).clamp(min=1e-20)).sqrt()
    return clean + gain.unsqueeze(1) * noise


def uniform(low_high: Sequence[float], count: int, device: torch.device) -> torch.Tensor:
    """``[count]`` values drawn uniformly in ``[low, high]``."""
    low, high = float(low_high[0]), float(low_high[1])
    return low + (high - low) * torch.rand(count, device=device)


def coloured_noise(exponents: torch.Tensor, frames: int) -> torch.Tensor:
    """Noise with power spectrum ``1 / f^a`` per row (``a``: 0 white, 1 pink, 2 brown).

    Arguments
    ---------
    exponents : torch.Tensor
        ``[N]`` spectral slopes ``a``.
    frames : int
        Length ``T``.

    Returns
    -------
    torch.Tensor
        ``[N, T]``, unit power per row.
    """
    white = torch.randn(exponents.shape[0], frames, device=exponents.device)
    bins = torch.arange(frames // 2 + 1, device=exponents.device).clamp(min=1)
    shaping = bins.unsqueeze(0) ** (-exponents.unsqueeze(1) / 2)
    shaped = torch.fft.irfft(torch.fft.rfft(white) * shaping, n=frames)
    shaped = shaped - shaped.mean(1, keepdim=True)
    return shaped / shaped.square().mean(1, keepdim=True).sqrt().clamp(min=1e-12)


def sum_talkers(draw_talker: Callable[[int], torch.Tensor], n_talkers: torch.Tensor) -> torch.Tensor:
    """Babble: row ``i`` sums ``n_talkers[i]`` talkers, each scaled to unit power.

    Arguments
    ---------
    draw_talker : callable
        ``draw_talker(j)`` returns talker ``j`` for every row, ``[N, T]``.
    n_talkers : torch.Tensor
        ``[N]`` talkers per row.

    Returns
    -------
    torch.Tensor
        ``[N, T]``.
    """
    babble = None
    for slot in range(int(n_talkers.max())):
        talker = draw_talker(slot)
        talker = talker / talker.square().mean(1, keepdim=True).sqrt().clamp(min=1e-12)
        talker = talker * (slot < n_talkers).unsqueeze(1)
        babble = talker if babble is None else babble + talker
    return babble


def batch_babble(
    wavs: torch.Tensor,
    rows: torch.Tensor,
    n_talkers: torch.Tensor,
    utterance_ids: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Babble for ``wavs[rows]`` from other utterances of the batch.

    Talker slot ``j`` of row ``i`` is ``wavs[(i - s_j) % N]`` with distinct random shifts
    ``s_j`` in ``[1, N)``, so the talkers of a row are distinct rows other than itself. When
    several rows are views of one utterance, ``utterance_ids`` silences the talkers that are the
    row's own utterance. A batch of one yields silence.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[N, T]`` the whole batch.
    rows : torch.Tensor
        ``[M]`` indices of the rows that get babble.
    n_talkers : torch.Tensor
        ``[M]`` talkers per row, clipped to ``N - 1``.
    utterance_ids : torch.Tensor, optional
        ``[N]`` utterance of each row (default: all rows distinct).

    Returns
    -------
    torch.Tensor
        ``[M, T]``.
    """
    batch = wavs.shape[0]
    if batch < 2:
        return torch.zeros(rows.shape[0], wavs.shape[1], device=wavs.device)
    shifts = torch.randperm(batch - 1, device=wavs.device) + 1
    n_talkers = n_talkers.clamp(max=batch - 1)

    def talker(slot: int) -> torch.Tensor:
        sources = (rows - shifts[slot]) % batch
        if utterance_ids is None:
            return wavs[sources]
        return wavs[sources] * (utterance_ids[sources] != utterance_ids[rows]).unsqueeze(1)

    return sum_talkers(talker, n_talkers)


def synthetic_rirs(
    rt60: torch.Tensor,
    drr_db: torch.Tensor,
    sample_rate: int,
    frames: int,
    n_reflections: int = 8,
    early_seconds: float = 0.05,
) -> torch.Tensor:
    """Room impulse responses with the direct path at index 0 and amplitude 1.

    After the direct path: a Gaussian tail under the envelope ``exp(-ln(1000) t / RT60)``
    (-60 dB at RT60) plus ``n_reflections`` sparse early reflections within ``early_seconds``
    (random sign, envelope-weighted, together about as energetic as the tail), all scaled so the
    direct-to-reverberant energy ratio is ``drr_db``.

    Arguments
    ---------
    rt60, drr_db : torch.Tensor
        ``[N]`` reverberation times (s) and direct-to-reverberant ratios (dB).
    frames : int
        RIR length ``L``.

    Returns
    -------
    torch.Tensor
        ``[N, L]``.
    """
    count, device = rt60.shape[0], rt60.device
    time = torch.arange(frames, device=device) / sample_rate
    envelope = torch.exp(-DECAY_60_DB * time.unsqueeze(0) / rt60.unsqueeze(1))
    reverberant = torch.randn(count, frames, device=device) * envelope
    early_frames = max(2, min(frames, int(early_seconds * sample_rate)))
    positions = torch.randint(1, early_frames, (count, n_reflections), device=device)
    tail_energy_share = envelope.square().sum(1, keepdim=True) / n_reflections
    signs = torch.randint(2, (count, n_reflections), device=device) * 2 - 1
    amplitudes = signs * envelope.gather(1, positions) * tail_energy_share.sqrt()
    reverberant = reverberant.scatter_add(1, positions, amplitudes)
    reverberant[:, 0] = 0.0
    reverberant_energy = reverberant.square().sum(1, keepdim=True).clamp(min=1e-12)
    target_energy = 10.0 ** (-drr_db.unsqueeze(1) / 10.0)
    rirs = reverberant * (target_energy / reverberant_energy).sqrt()
    rirs[:, 0] = 1.0
    return rirs


def align_direct_path(rir: torch.Tensor) -> torch.Tensor:
    """A measured ``[L]`` RIR shifted so its strongest tap (the direct path) is at index 0 with
    value +1; what precedes it (propagation delay) is dropped."""
    peak = int(rir.abs().argmax())
    return rir[peak:] / rir[peak]


def reverberate(wavs: torch.Tensor, rirs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Batched FFT convolution of each row with its own RIR, direct path kept in place.

    Arguments
    ---------
    wavs : torch.Tensor
        ``[N, T]``.
    rirs : torch.Tensor
        ``[N, L]`` with the direct path at index 0 (so no delay is introduced).
    mask : torch.Tensor
        ``[N, T]`` valid samples: the output keeps each row's power over them and is zero after.

    Returns
    -------
    torch.Tensor
        ``[N, T]``: the first ``T`` samples of the convolution (the tail past the end is cut).
    """
    frames = wavs.shape[1]
    fft_size = 1 << (frames + rirs.shape[1] - 2).bit_length()
    spectrum = torch.fft.rfft(wavs, n=fft_size) * torch.fft.rfft(rirs, n=fft_size)
    wet = torch.fft.irfft(spectrum, n=fft_size)[:, :frames] * mask
    gain = (mean_power(wavs, mask) / mean_power(wet, mask).clamp(min=1e-20)).sqrt()
    return wet * gain.unsqueeze(1)


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


class SpeechAugment(nn.Module):
    """Per-sample random reverberation then additive noise, music or babble (see module doc).

    Arguments
    ---------
    sample_rate : int
        Rate of the waveforms.
    noise_folder : PathLike, optional
        MUSAN-like folder (``noise/ music/ speech/``); None: generated noise and batch babble.
    rir_folder : PathLike, optional
        RIRS_NOISES-like folder; None: synthetic RIRs.
    noise_prob, reverb_prob : float
        Per-sample probabilities of adding noise and of reverberating.
    noise_snr, music_snr, babble_snr : (float, float)
        SNR range in dB per noise category; the category is uniform among those available.
    babble_talkers : (int, int)
        Range of talkers summed into babble (paper: 3-10 MUSAN speakers).
    rt60, drr_db : (float, float)
        Ranges of the synthetic RIRs' reverberation time (s) and direct-to-reverberant ratio.
    gain_db : (float, float), optional
        When set, every output row is scaled by a random gain in this range (dB).
    pool_size, pool_refresh : int
        Segments held per folder pool, and replaced per call.
    noise_segment_seconds, max_rir_seconds : float
        Length of pooled noise segments (tiled if a batch is longer) and of pooled RIRs.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        noise_folder: Optional[PathLike] = None,
        rir_folder: Optional[PathLike] = None,
        noise_prob: float = 0.7,
        reverb_prob: float = 0.45,
        noise_snr: Sequence[float] = (0.0, 18.0),
        music_snr: Sequence[float] = (3.0, 18.0),
        babble_snr: Sequence[float] = (3.0, 18.0),
        babble_talkers: Sequence[int] = (3, 10),
        rt60: Sequence[float] = (0.2, 0.8),
        drr_db: Sequence[float] = (0.0, 10.0),
        gain_db: Optional[Sequence[float]] = None,
        pool_size: int = 48,
        pool_refresh: int = 2,
        noise_segment_seconds: float = 6.0,
        max_rir_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.noise_prob = noise_prob
        self.reverb_prob = reverb_prob
        self.snr_ranges = {"noise": noise_snr, "music": music_snr, "babble": babble_snr}
        self.babble_talkers = babble_talkers
        self.rt60 = rt60
        self.drr_db = drr_db
        self.gain_db = gain_db
        self.noise_pools = self._noise_pools(
            noise_folder, int(noise_segment_seconds * sample_rate), pool_size, pool_refresh
        )
        self.categories = [c for c in NOISE_CATEGORIES if c != "music" or c in self.noise_pools]
        self.rir_pool = self._rir_pool(rir_folder, int(max_rir_seconds * sample_rate), pool_size, pool_refresh)

    def _noise_pools(
        self, folder: Optional[PathLike], segment_frames: int, size: int, refresh: int
    ) -> Dict[str, AudioPool]:
        if folder is None:
            return {}
        folder = require_folder(folder, "noise")
        pools = {}
        for category, subfolder in MUSAN_SUBFOLDERS.items():
            files = find_audio_files(os.path.join(folder, subfolder))
            if files:
                pools[category] = AudioPool(files, segment_frames, size, refresh, self.sample_rate)
        if not pools:
            raise DataError(
                "no audio files in noise/, music/ or speech/ (MUSAN layout expected)", folder
            )
        return pools

    def _rir_pool(
        self, folder: Optional[PathLike], rir_frames: int, size: int, refresh: int
    ) -> Optional[AudioPool]:
        if folder is None:
            return None
        folder = require_folder(folder, "RIR")
        files = find_audio_files(folder, exclude_substring="noise")
        if not files:
            raise DataError("no room impulse responses (audio files) found", folder)
        return AudioPool(files, rir_frames, size, refresh, self.sample_rate, prepare=align_direct_path)

    def forward(
        self,
        wavs: torch.Tensor,
        lengths: Optional[torch.Tensor] = None,
        utterance_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Augments each row independently.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[N, T]`` waveforms.
        lengths : torch.Tensor, optional
            ``[N]`` relative valid lengths (default: all 1).
        utterance_ids : torch.Tensor, optional
            ``[N]`` utterance of each row, when rows are several views of the same utterances
            (e.g. ``arange(N) % B`` for view-major crops): batch babble then never mixes in the
            row's own utterance. Default: all rows are different utterances.

        Returns
        -------
        torch.Tensor
            ``[N, T]``; rows that drew neither reverb nor noise (and no gain) are unchanged.
        """
        count, frames = wavs.shape
        device = wavs.device
        if lengths is None:
            lengths = torch.ones(count, device=device)
        mask = valid_mask(lengths.to(device), frames)
        for pool in [*self.noise_pools.values(), self.rir_pool]:
            if pool is not None:
                pool.refresh()
        augmented = wavs.clone()

        reverb_rows = (torch.rand(count, device=device) < self.reverb_prob).nonzero().squeeze(1)
        if reverb_rows.numel():
            rirs = self._draw_rirs(reverb_rows.shape[0], device)
            augmented[reverb_rows] = reverberate(wavs[reverb_rows], rirs, mask[reverb_rows])

        noisy = torch.rand(count, device=device) < self.noise_prob
        category_of_row = torch.randint(len(self.categories), (count,), device=device)
        for index, category in enumerate(self.categories):
            rows = (noisy & (category_of_row == index)).nonzero().squeeze(1)
            if rows.numel():
                noise = self._draw_noise(category, wavs, rows, utterance_ids)
                snr = uniform(self.snr_ranges[category], rows.shape[0], device)
                augmented[rows] = add_at_snr(augmented[rows], noise, snr, mask[rows])

        if self.gain_db is not None:
            augmented = augmented * 10.0 ** (uniform(self.gain_db, count, device) / 20.0).unsqueeze(1)
        return augmented

    def _draw_rirs(self, count: int, device: torch.device) -> torch.Tensor:
        """``[count, L]`` RIRs, direct path at index 0."""
        if self.rir_pool is not None:
            return self.rir_pool.draw(count).to(device)
        rt60 = uniform(self.rt60, count, device)
        rir_frames = int(math.ceil(float(self.rt60[1]) * self.sample_rate))
        return synthetic_rirs(rt60, uniform(self.drr_db, count, device), self.sample_rate, rir_frames)

    def _draw_noise(
        self,
        category: str,
        wavs: torch.Tensor,
        rows: torch.Tensor,
        utterance_ids: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """``[M, T]`` noise of ``category`` for ``wavs[rows]`` (any power; mixing sets the SNR)."""
        count, frames, device = rows.shape[0], wavs.shape[1], wavs.device
        if category == "babble":
            low, high = int(self.babble_talkers[0]), int(self.babble_talkers[1])
            n_talkers = torch.randint(low, high + 1, (count,), device=device)
            if "babble" in self.noise_pools:
                pool = self.noise_pools["babble"]
                return sum_talkers(lambda slot: pool.draw_tiled(count, frames, device), n_talkers)
            return batch_babble(wavs, rows, n_talkers, utterance_ids)
        if category in self.noise_pools:
            return self.noise_pools[category].draw_tiled(count, frames, device)
        exponents = torch.tensor(NOISE_EXPONENTS, device=device)
        return coloured_noise(exponents[torch.randint(len(NOISE_EXPONENTS), (count,), device=device)], frames)

    def extra_repr(self) -> str:
        rirs = "folder" if self.rir_pool is not None else "synthetic"
        return (
            f"noise_prob={self.noise_prob}, reverb_prob={self.reverb_prob}, "
            f"categories={self.categories}, rirs={rirs}"
        )
