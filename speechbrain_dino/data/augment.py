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
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from speechbrain_dino.data.audio_pool import AudioPool, find_audio_files, require_folder
from speechbrain_dino.data.mixing import add_at_snr, uniform, valid_mask
from speechbrain_dino.data.noise import NOISE_EXPONENTS, batch_babble, coloured_noise, sum_talkers
from speechbrain_dino.data.reverb import align_direct_path, reverberate, synthetic_rirs
from speechbrain_dino.errors import DataError, PathLike

NOISE_CATEGORIES = ("noise", "music", "babble")
MUSAN_SUBFOLDERS = {"noise": "noise", "music": "music", "babble": "speech"}


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
    independent_babble : bool
        In-batch babble (no ``speech/`` folder): every row draws its own interfering utterances
        (default). False: one draw of talker shifts per call, shared by all views of an utterance
        (a shortcut for view matching; kept for comparison).
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
        independent_babble: bool = True,
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
        self.independent_babble = independent_babble
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
            return batch_babble(wavs, rows, n_talkers, utterance_ids, self.independent_babble)
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
