"""A generated speech-like corpus with speaker and emotion labels (nothing is downloaded).

Every utterance comes from a source-filter synthesiser:

* **source**: a glottal pulse train following an f0 contour (per-speaker median and range,
  intonation, jitter, shimmer) plus aspiration noise (breathiness), and a separate noise source
  for fricatives, stop bursts and aspiration;
* **filter**: five formant resonators whose targets follow a random phone-like sequence
  (vowels, nasals, approximants, fricatives, stops, pauses) with smooth transitions, scaled by
  the speaker's vocal-tract length and personal vowel space, and a spectral tilt.

Speakers have stable traits; each utterance has random content and length, a random channel
(equaliser curve, tilt, loudness, a little background noise) and small f0 / rate drifts, so
speakers are not trivially separable. Emotions shift the prosody (f0 level and range, speaking
rate, vocal effort: level and tilt) the same way for every speaker.

The filter is applied in the short-time Fourier domain: the pulse train's STFT is multiplied by
each frame's envelope (formant magnitude responses evaluated on the FFT grid) and resynthesised
by overlap-add, which makes a time-varying filter with no per-sample Python loop.

Generation is deterministic: utterance ``(speaker, utt)`` is drawn from the random stream
``(seed, speaker, utt)`` alone, so files are byte-identical for a seed whatever the order or
number of worker processes.

Command line::

    python -m speechbrain_dino.synthetic --output_folder DIR --speakers 20 --utterances 10 \\
        --emotions 4 --seed 0

writes ``DIR/wav/spk000/spk000_utt0000.wav`` ... and ``DIR/manifest.csv``.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.ndimage import convolve1d
from scipy.signal import istft, lfilter, stft
from scipy.signal.windows import hann

from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.manifest import Row, read_manifest, summarize, write_manifest

#: Bumped whenever the synthesiser's output changes, so an old corpus is not mistaken for a new one.
GENERATOR_VERSION = 1
OPTIONS_FILE = "synthetic.json"
MANIFEST_FILE = "manifest.csv"

# ----------------------------------------------------------------------------------------------
# Phone inventory
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One acoustic segment of a phone (a stop has closure, release and aspiration segments)."""

    formants: Tuple[float, float, float]  #: F1-F3 targets (Hz) for a reference vocal tract
    voicing: float  #: glottal source amplitude
    frication: float  #: noise source amplitude
    noise_centre: float  #: centre of the frication spectrum (Hz)
    noise_width: float  #: half-width of the frication spectrum (Hz)
    milliseconds: Tuple[float, float]  #: duration range at the normal speaking rate


def _vowel(f1: float, f2: float, f3: float) -> Segment:
    return Segment((f1, f2, f3), 1.0, 0.0, 0.0, 1.0, (70.0, 170.0))


def _sonorant(f1: float, f2: float, f3: float, voicing: float) -> Segment:
    return Segment((f1, f2, f3), voicing, 0.0, 0.0, 1.0, (40.0, 80.0))


def _fricative(centre: float, width: float, frication: float, voicing: float) -> Segment:
    milliseconds = (50.0, 100.0) if voicing else (70.0, 130.0)
    return Segment((400.0, 1600.0, 2600.0), voicing, frication, centre, width, milliseconds)


SEGMENTS: Dict[str, Segment] = {
    "sil": Segment((500.0, 1500.0, 2500.0), 0.0, 0.0, 0.0, 1.0, (120.0, 400.0)),
    # Vowels (Peterson & Barney adult male means).
    "iy": _vowel(270, 2290, 3010),
    "ih": _vowel(390, 1990, 2550),
    "eh": _vowel(530, 1840, 2480),
    "ae": _vowel(660, 1720, 2410),
    "aa": _vowel(730, 1090, 2440),
    "ao": _vowel(570, 840, 2410),
    "uh": _vowel(440, 1020, 2240),
    "uw": _vowel(300, 870, 2240),
    "ah": _vowel(640, 1190, 2390),
    "er": _vowel(490, 1350, 1690),
    # Nasals and approximants.
    "m": _sonorant(280, 1000, 2200, 0.3),
    "n": _sonorant(280, 1600, 2600, 0.3),
    "l": _sonorant(360, 1300, 2700, 0.6),
    "r": _sonorant(420, 1300, 1600, 0.6),
    "w": _sonorant(300, 700, 2200, 0.6),
    "y": _sonorant(280, 2200, 2900, 0.6),
    # Fricatives.
    "s": _fricative(5500, 1200, 0.25, 0.0),
    "sh": _fricative(3000, 900, 0.25, 0.0),
    "f": _fricative(6000, 3500, 0.06, 0.0),
    "th": _fricative(5000, 3000, 0.05, 0.0),
    "h": _fricative(1600, 2000, 0.075, 0.0),
    "z": _fricative(5500, 1200, 0.175, 0.25),
    "v": _fricative(6000, 3500, 0.05, 0.35),
    "zh": _fricative(3000, 900, 0.175, 0.25),
    # Stop segments: closures at the place's formant loci, releases, aspiration.
    "lab_cl": Segment((300, 900, 2200), 0.0, 0.0, 0.0, 1.0, (40.0, 80.0)),
    "alv_cl": Segment((300, 1700, 2700), 0.0, 0.0, 0.0, 1.0, (40.0, 80.0)),
    "vel_cl": Segment((300, 2000, 2400), 0.0, 0.0, 0.0, 1.0, (40.0, 80.0)),
    "lab_vcl": Segment((250, 900, 2200), 0.05, 0.0, 0.0, 1.0, (40.0, 70.0)),
    "alv_vcl": Segment((250, 1700, 2700), 0.05, 0.0, 0.0, 1.0, (40.0, 70.0)),
    "vel_vcl": Segment((250, 2000, 2400), 0.05, 0.0, 0.0, 1.0, (40.0, 70.0)),
    "lab_rel": Segment((300, 900, 2200), 0.0, 0.3, 900, 1500, (8.0, 15.0)),
    "alv_rel": Segment((300, 1700, 2700), 0.0, 0.3, 4500, 2000, (8.0, 15.0)),
    "vel_rel": Segment((300, 2000, 2400), 0.0, 0.3, 2200, 800, (10.0, 20.0)),
    "asp": Segment((500, 1500, 2500), 0.0, 0.075, 1600, 2500, (25.0, 50.0)),
}
SEGMENT_NAMES = tuple(SEGMENTS)
_SEGMENT_ID = {name: index for index, name in enumerate(SEGMENT_NAMES)}
SILENCE = _SEGMENT_ID["sil"]

#: Phones as sequences of segments.
PHONES: Dict[str, Tuple[str, ...]] = {
    **{name: (name,) for name in ("m", "n", "l", "r", "w", "y")},
    **{name: (name,) for name in ("s", "sh", "f", "th", "h", "z", "v", "zh")},
    "p": ("lab_cl", "lab_rel", "asp"),
    "t": ("alv_cl", "alv_rel", "asp"),
    "k": ("vel_cl", "vel_rel", "asp"),
    "b": ("lab_vcl", "lab_rel"),
    "d": ("alv_vcl", "alv_rel"),
    "g": ("vel_vcl", "vel_rel"),
}
VOWELS = ("iy", "ih", "eh", "ae", "aa", "ao", "uh", "uw", "ah", "er")
CONSONANTS = tuple(PHONES)

# Per-segment tables indexed by segment id: [S, 3] formants, then [S] each.
_FORMANTS, _VOICING, _FRICATION, _NOISE_CENTRE, _NOISE_WIDTH = (
    np.array([getattr(SEGMENTS[name], field) for name in SEGMENT_NAMES])
    for field in ("formants", "voicing", "frication", "noise_centre", "noise_width")
)
_FORMANT_HALF_BANDWIDTHS = np.array([30.0, 45.0, 60.0, 90.0, 125.0])  # B/2 of F1-F5 (Hz)

# ----------------------------------------------------------------------------------------------
# Speakers and emotions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    """Stable voice traits of one speaker."""

    f0_hz: float  #: median fundamental frequency
    f0_range: float  #: standard deviation of intonation, semitones
    jitter: float  #: pulse position perturbation, fraction of a period
    shimmer: float  #: pulse amplitude perturbation (log-normal sigma)
    breathiness: float  #: aspiration noise relative to the pulse train
    tilt_db: float  #: source spectral slope, dB per octave
    formant_scale: float  #: vocal-tract length factor on every formant
    high_formants: Tuple[float, float]  #: F4, F5 (Hz)
    bandwidth_scale: float  #: factor on the formant bandwidths
    rate: float  #: speaking rate factor
    vowel_space: np.ndarray  #: [segments, 3] personal factors on F1-F3 targets


@dataclass(frozen=True)
class Prosody:
    """How an emotion shifts a speaker's delivery."""

    f0_shift: float  #: semitones added to the f0 contour
    f0_range: float  #: factor on the speaker's intonation range
    rate: float  #: factor on the speaking rate
    level_db: float  #: loudness offset
    tilt_db: float  #: added source slope (positive: brighter, more vocal effort)
    breathiness: float  #: added aspiration


EMOTIONS: Dict[str, Prosody] = {
    "neutral": Prosody(0.0, 1.0, 1.0, 0.0, 0.0, 0.0),
    "angry": Prosody(2.5, 1.3, 1.12, 4.0, 1.5, 0.0),
    "sad": Prosody(-2.0, 0.6, 0.85, -3.0, -1.0, 0.05),
    "happy": Prosody(2.0, 1.4, 1.08, 2.0, 0.8, 0.0),
    "fearful": Prosody(3.0, 0.8, 1.15, -1.0, 0.0, 0.075),
    "surprised": Prosody(2.5, 1.6, 0.95, 1.5, 0.5, 0.0),
}
EMOTION_NAMES = tuple(EMOTIONS)


def _random_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream for ``key`` (e.g. a stream id, speaker and utterance)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_SPEAKER_STREAM, _UTTERANCE_STREAM, _LENGTH_STREAM = 0, 1, 2
_CONTENT, _INTONATION, _SOURCE, _CHANNEL = range(4)


def speaker_traits(seed: int, speaker: int) -> Speaker:
    """The traits of speaker number ``speaker`` of the corpus made with ``seed``."""
    rng = _random_stream(seed, _SPEAKER_STREAM, speaker)
    low_voice = rng.random() < 0.5
    f0_low, f0_high = (85.0, 150.0) if low_voice else (165.0, 260.0)
    f0_hz = np.exp(rng.uniform(np.log(f0_low), np.log(f0_high)))
    formant_scale = rng.uniform(0.88, 1.02) if low_voice else rng.uniform(1.04, 1.2)
    return Speaker(
        f0_hz=float(f0_hz),
        f0_range=float(rng.uniform(1.0, 3.0)),
        jitter=float(rng.uniform(0.003, 0.015)),
        shimmer=float(rng.uniform(0.03, 0.12)),
        breathiness=float(rng.uniform(0.015, 0.15)),
        tilt_db=float(rng.uniform(-10.0, -2.0)),
        formant_scale=float(formant_scale),
        high_formants=(float(rng.uniform(3200, 4000)), float(rng.uniform(4300, 5000))),
        bandwidth_scale=float(rng.uniform(0.8, 1.4)),
        rate=float(rng.uniform(0.85, 1.2)),
        vowel_space=np.exp(rng.normal(0.0, 0.08, size=(len(SEGMENT_NAMES), 3))),
    )


# ----------------------------------------------------------------------------------------------
# Synthesis
# ----------------------------------------------------------------------------------------------

_FFT_SECONDS = 0.032  # analysis window; the hop is a quarter of it (8 ms at 16 kHz)
_SOURCE_CORNER_HZ = 200.0  # the source slope starts above this frequency
_CHANNEL_RIPPLE_DB = 2.0  # standard deviation of each equaliser cosine


def _stft_options(sample_rate: int) -> dict:
    """scipy ``stft``/``istft`` options: periodic Hann window, hop a quarter of it, so that frame
    ``p`` is centred on sample ``p * hop`` (zero-padded boundaries)."""
    size = 1 << int(np.ceil(np.log2(_FFT_SECONDS * sample_rate)))
    return dict(fs=sample_rate, window="hann", nperseg=size, noverlap=size - size // 4)


def _white_spectra(
    rng: np.random.Generator, shape: Tuple[int, int], size: int, hop: int
) -> np.ndarray:
    """``[F, K]`` random spectra that ``istft`` turns into unit-variance white noise.

    Independent frames overlap-added with a window of ``size`` every ``hop`` samples, under
    scipy's spectrum scaling (``1 / sum(window)``).
    """
    window = hann(size, sym=False)
    scale = np.sqrt(size * np.sum(window**2) / hop / 2.0) / np.sum(window)
    return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def _segment_sequence(
    rng: np.random.Generator, num_samples: int, rate: float, sample_rate: int
) -> np.ndarray:
    """Random words of random syllables, with pauses, filling ``num_samples``.

    Returns
    -------
    np.ndarray
        ``[num_samples]`` segment id of every sample.
    """

    def segment_lengths(names: Sequence[str]) -> List[Tuple[int, int]]:
        low, high = np.array([SEGMENTS[name].milliseconds for name in names]).T
        seconds = rng.uniform(low, high) / 1000.0 / rate
        samples = (seconds * sample_rate).astype(int)
        return list(zip((_SEGMENT_ID[name] for name in names), samples))

    lead, trail = (int(rng.uniform(0.05, 0.25) * sample_rate) for _ in range(2))
    sequence = [(SILENCE, lead)]
    used = lead
    while True:
        names: List[str] = []
        for _ in range(rng.integers(1, 4)):
            if rng.random() < 0.75:
                names += PHONES[CONSONANTS[rng.integers(len(CONSONANTS))]]
            names.append(VOWELS[rng.integers(len(VOWELS))])
            if rng.random() < 0.35:
                names += PHONES[CONSONANTS[rng.integers(len(CONSONANTS))]]
        if rng.random() < 0.25:
            names.append("sil")
        word = segment_lengths(names)
        word_length = sum(length for _, length in word)
        if used + word_length > num_samples - trail:
            break
        sequence += word
        used += word_length
    sequence.append((SILENCE, num_samples - used))
    ids, lengths = np.array(sequence).T
    return np.repeat(ids, lengths)


def _smooth(track: np.ndarray, frames: int) -> np.ndarray:
    """Hann-window moving average over axis 0 (frames), edges held."""
    kernel = hann(frames + 2)[1:-1]
    return convolve1d(track, kernel / kernel.sum(), axis=0, mode="nearest")


def _f0_contour(
    rng: np.random.Generator,
    speaker: Speaker,
    prosody: Prosody,
    num_frames: int,
    hop_seconds: float,
) -> np.ndarray:
    """f0 per frame (Hz): declination, smooth random intonation, utterance drift, emotion."""
    intonation = lfilter([1.0], [1.0, -0.97], rng.standard_normal(num_frames + 200))[200:]
    intonation /= intonation.std() + 1e-9
    declination = np.linspace(1.0, -1.0, num_frames) * min(1.5, 0.4 * num_frames * hop_seconds)
    semitones = (
        rng.normal(0.0, 0.7)
        + prosody.f0_shift
        + speaker.f0_range * prosody.f0_range * (intonation + 0.5 * declination)
    )
    return np.clip(speaker.f0_hz * 2.0 ** (semitones / 12.0), 50.0, 600.0)


def _pulse_train(
    rng: np.random.Generator,
    f0_per_sample: np.ndarray,
    jitter: float,
    shimmer: float,
    sample_rate: int,
) -> np.ndarray:
    """Glottal pulses at the f0 contour, with jitter and shimmer; mean power about 1.

    Returns
    -------
    np.ndarray
        ``[T]`` impulse train (each pulse scaled by sqrt(period) so loudness ignores f0).
    """
    cycles = np.floor(np.cumsum(f0_per_sample) / sample_rate)
    positions = np.flatnonzero(np.diff(cycles)) + 1
    periods = sample_rate / f0_per_sample[positions]
    jittered = np.round(positions + rng.normal(0.0, jitter, positions.size) * periods).astype(int)
    jittered = np.clip(jittered, 0, f0_per_sample.size - 1)
    amplitudes = np.sqrt(periods) * np.exp(rng.normal(0.0, shimmer, positions.size))
    pulses = np.zeros(f0_per_sample.size)
    np.add.at(pulses, jittered, amplitudes)
    return pulses


def _formant_tracks(
    traits: Speaker, segment_of_frame: np.ndarray, smooth_frames: int
) -> np.ndarray:
    """F1-F5 per frame (``[F, 5]``, Hz): segment targets in the speaker's vowel space, smoothed
    in log frequency so that formants glide between phones, scaled by vocal-tract length."""
    targets = _FORMANTS[segment_of_frame] * traits.vowel_space[segment_of_frame]
    high = np.broadcast_to(traits.high_formants, (len(segment_of_frame), 2))
    log_targets = np.log(np.concatenate([targets, high], axis=1))
    return traits.formant_scale * np.exp(_smooth(log_targets, smooth_frames))


def _log_formant_response(
    frequencies: np.ndarray, formants: np.ndarray, half_bandwidths: np.ndarray
) -> np.ndarray:
    """Natural-log magnitude of cascaded two-pole resonators, unit gain at 0 Hz.

    Arguments
    ---------
    frequencies : np.ndarray
        ``[K]`` FFT bin frequencies (Hz).
    formants : np.ndarray
        ``[F, R]`` resonance frequencies per frame.
    half_bandwidths : np.ndarray
        ``[R]`` half the 3-dB bandwidths.

    Returns
    -------
    np.ndarray
        ``[F, K]`` log magnitude response per frame.
    """
    f = frequencies[None, :, None].astype(np.float32)
    formants = formants[:, None, :].astype(np.float32)
    b2 = (half_bandwidths**2).astype(np.float32)
    log_num = np.log(formants**2 + b2)
    log_den = 0.5 * np.log(((f - formants) ** 2 + b2) * ((f + formants) ** 2 + b2))
    return (log_num - log_den).sum(axis=-1)


def _frication_band(
    frequencies: np.ndarray, traits: Speaker, segment_of_frame: np.ndarray
) -> np.ndarray:
    """``[F, K]`` magnitude of each frame's noise band (squared Lorentzian, peak 1)."""
    centre = traits.formant_scale * _NOISE_CENTRE[segment_of_frame, None]
    width = _NOISE_WIDTH[segment_of_frame, None]
    return (width**2 / ((frequencies - centre) ** 2 + width**2)) ** 2


def _channel_db(rng: np.random.Generator, frequencies: np.ndarray) -> np.ndarray:
    """A random smooth equaliser curve plus tilt, in dB per FFT bin (``[K]``)."""
    mel = np.log1p(frequencies / 700.0)
    cosines = np.cos(np.pi * np.arange(1, 5)[:, None] * mel / mel[-1])  # [4, K]
    ripples = rng.normal(0.0, _CHANNEL_RIPPLE_DB, size=4) @ cosines
    return ripples + rng.normal(0.0, 1.5) * np.log2(1.0 + frequencies / 1000.0)


def _db_to_log(decibels):
    """dB of amplitude to natural log of amplitude."""
    return decibels * (np.log(10.0) / 20.0)


def synthesize_utterance(
    seed: int,
    speaker: int,
    utterance: int,
    emotion: str,
    num_samples: int,
    sample_rate: int = 16000,
) -> np.ndarray:
    """One utterance of ``speaker`` in ``emotion``.

    Content, intonation, source noise and channel come from random streams keyed by
    ``(seed, speaker, utterance)``: the same indices in another emotion say the same phones
    through the same channel.

    Returns
    -------
    np.ndarray
        ``[num_samples]`` float32 waveform in [-1, 1].
    """
    traits = speaker_traits(seed, speaker)
    prosody = EMOTIONS[emotion]
    content, intonation, source, channel = (
        _random_stream(seed, _UTTERANCE_STREAM, speaker, utterance, part)
        for part in (_CONTENT, _INTONATION, _SOURCE, _CHANNEL)
    )
    rate = traits.rate * prosody.rate * float(np.exp(content.normal(0.0, 0.08)))
    segment_of_sample = _segment_sequence(content, num_samples, rate, sample_rate)
    options = _stft_options(sample_rate)
    size, hop = options["nperseg"], options["nperseg"] - options["noverlap"]
    hop_seconds = hop / sample_rate

    # Source: pulses along the f0 contour (control points every hop), plus aspiration noise.
    f0 = _f0_contour(intonation, traits, prosody, num_samples // hop + 2, hop_seconds)
    f0_per_sample = np.interp(np.arange(num_samples), np.arange(f0.size) * hop, f0)
    pulses = _pulse_train(source, f0_per_sample, traits.jitter, traits.shimmer, sample_rate)
    frequencies, _, voice = stft(pulses, **options)
    voice = voice.T  # [F, K]
    aspiration, frication = (_white_spectra(source, voice.shape, size, hop) for _ in range(2))
    voice += (traits.breathiness + prosody.breathiness) * aspiration
    segment_of_frame = segment_of_sample[np.minimum(np.arange(len(voice)) * hop, num_samples - 1)]

    # Filters: formants and source slope for the voice, a band for the frication noise, and
    # the utterance's channel for both.
    formants = _formant_tracks(traits, segment_of_frame, max(3, round(0.05 / hop_seconds)))
    half_bandwidths = _FORMANT_HALF_BANDWIDTHS * traits.bandwidth_scale
    tilt_db = traits.tilt_db + prosody.tilt_db + channel.normal(0.0, 0.7)
    channel_log = _db_to_log(_channel_db(channel, frequencies))
    source_log = _db_to_log(tilt_db * np.log2(1.0 + frequencies / _SOURCE_CORNER_HZ))
    level_frames = max(3, round(0.02 / hop_seconds))
    voice *= _smooth(_VOICING[segment_of_frame], level_frames)[:, None] * np.exp(
        _log_formant_response(frequencies, formants, half_bandwidths) + source_log + channel_log
    )
    frication *= _smooth(_FRICATION[segment_of_frame], level_frames)[:, None]
    frication *= _frication_band(frequencies, traits, segment_of_frame) * np.exp(channel_log)
    speech = istft((voice + frication).T, **options)[1][:num_samples]

    # Loudness, background noise, range.
    level_db = channel.uniform(-32.0, -22.0) + prosody.level_db
    speech *= 10.0 ** (level_db / 20.0) / (np.sqrt(np.mean(speech**2)) + 1e-12)
    colour = channel.uniform(0.0, 0.98)  # 0: white, towards 1: brown
    background = lfilter([1.0], [1.0, -colour], channel.standard_normal(num_samples))
    snr_db = channel.uniform(25.0, 45.0)
    background *= 10.0 ** ((level_db - snr_db) / 20.0) / background.std()
    return np.clip(speech + background, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusOptions:
    """Everything that determines a generated corpus (recorded in ``synthetic.json``)."""

    speakers: int
    utterances: int
    emotions: int
    seed: int
    min_seconds: float
    max_seconds: float
    sample_rate: int
    generator_version: int = GENERATOR_VERSION

    def validate(self) -> None:
        """Raises DataError for counts or durations that make no corpus."""
        if self.speakers < 1 or self.utterances < 1:
            raise DataError(
                "need at least one speaker and one utterance per speaker, got "
                f"{self.speakers} and {self.utterances}"
            )
        if not 1 <= self.emotions <= len(EMOTION_NAMES):
            raise DataError(
                f"emotions must be between 1 and {len(EMOTION_NAMES)}, got {self.emotions}"
            )
        if self.seed < 0:
            raise DataError(f"seed must be non-negative, got {self.seed}")
        if not 0.5 <= self.min_seconds <= self.max_seconds:
            raise DataError(
                "need 0.5 <= min_seconds <= max_seconds, got "
                f"{self.min_seconds} and {self.max_seconds}"
            )
        if self.sample_rate < 8000:
            raise DataError(f"sample_rate must be at least 8000 Hz, got {self.sample_rate}")


def _utterance_row(options: CorpusOptions, wav_folder: str, speaker: int, utterance: int) -> Row:
    """Synthesises and writes one utterance; returns its manifest row."""
    rng = _random_stream(options.seed, _LENGTH_STREAM, speaker, utterance)
    num_samples = int(rng.uniform(options.min_seconds, options.max_seconds) * options.sample_rate)
    emotion = EMOTION_NAMES[(speaker + utterance) % options.emotions]
    waveform = synthesize_utterance(
        options.seed, speaker, utterance, emotion, num_samples, options.sample_rate
    )
    spk_id = f"spk{speaker:03d}"
    utt_id = f"{spk_id}_utt{utterance:04d}"
    path = os.path.join(wav_folder, spk_id, utt_id + ".wav")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = np.round(waveform * 32767.0).astype(np.int16)
    sf.write(path, pcm, options.sample_rate, subtype="PCM_16")
    return {
        "ID": utt_id,
        "duration": f"{num_samples / options.sample_rate:.3f}",
        "wav": path,
        "spk_id": spk_id,
        "emotion": emotion,
    }


def _recorded_options(output_folder: str) -> Optional[dict]:
    """The options of the corpus generated into the folder, None when there is none."""
    path = os.path.join(output_folder, OPTIONS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fin:
        try:
            return json.load(fin)
        except json.JSONDecodeError:
            raise DataError("not a synthetic-corpus options file", path) from None


def generate_corpus(
    output_folder: PathLike,
    speakers: int = 20,
    utterances: int = 10,
    emotions: int = 4,
    seed: int = 0,
    min_seconds: float = 2.0,
    max_seconds: float = 8.0,
    sample_rate: int = 16000,
    workers: int = 1,
    overwrite: bool = False,
) -> List[Row]:
    """Generates the corpus into ``output_folder`` (skipped when it is already there).

    Arguments
    ---------
    output_folder : PathLike
        Receives ``wav/spkNNN/spkNNN_uttMMMM.wav``, ``manifest.csv`` and ``synthetic.json``.
    speakers, utterances : int
        Number of speakers, and utterances per speaker.
    emotions : int
        Number of emotion classes, the first of :data:`EMOTION_NAMES`; balanced within speaker.
    seed : int
        Non-negative; the same seed gives byte-identical files.
    min_seconds, max_seconds : float
        Uniform range of utterance durations.
    sample_rate : int
        Hz.
    workers : int
        Processes for synthesis (the output does not depend on it).
    overwrite : bool
        Replace a different corpus (or a foreign manifest) already in the folder.

    Returns
    -------
    list of dict
        The manifest rows (``ID, duration, wav, spk_id, emotion`` as strings).

    Raises
    ------
    DataError
        Invalid options, or a different corpus already in the folder and ``overwrite`` not set.
    """
    options = CorpusOptions(
        speakers, utterances, emotions, seed, float(min_seconds), float(max_seconds), sample_rate
    )
    options.validate()
    output_folder = os.path.abspath(os.fspath(output_folder))
    manifest_path = os.path.join(output_folder, MANIFEST_FILE)
    wanted = dataclasses.asdict(options)
    recorded = _recorded_options(output_folder)
    if recorded == wanted and os.path.isfile(manifest_path):
        return read_manifest(manifest_path, required=("ID", "duration", "wav", "spk_id", "emotion"))
    foreign = recorded is not None and recorded != wanted
    if (foreign or os.path.isfile(manifest_path)) and not overwrite:
        raise DataError(
            "holds a different corpus (manifest or options differ from "
            f"{wanted}); choose another folder or pass overwrite=True (--overwrite)",
            output_folder,
        )
    wav_folder = os.path.join(output_folder, "wav")
    if recorded is not None:  # our own earlier corpus: no stale files may remain
        shutil.rmtree(wav_folder, ignore_errors=True)
    os.makedirs(output_folder, exist_ok=True)
    with open(os.path.join(output_folder, OPTIONS_FILE), "w", encoding="utf-8") as fout:
        json.dump(wanted, fout, indent=2)
    tasks = [
        (options, wav_folder, speaker, utterance)
        for speaker in range(speakers)
        for utterance in range(utterances)
    ]
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            chunksize = max(1, len(tasks) // (8 * workers))
            rows = pool.starmap(_utterance_row, tasks, chunksize=chunksize)
    else:
        rows = list(itertools.starmap(_utterance_row, tasks))
    write_manifest(rows, manifest_path)
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point (``sbdino-synthetic``); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--utterances", type=int, default=10, help="per speaker")
    parser.add_argument(
        "--emotions", type=int, default=4, help=f"the first N of {', '.join(EMOTION_NAMES)}"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=8.0)
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a different corpus in the folder"
    )
    args = parser.parse_args(argv)
    try:
        rows = generate_corpus(**vars(args))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{os.path.join(os.path.abspath(args.output_folder), MANIFEST_FILE)}: {summarize(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
