"""Source-filter synthesis of one utterance in the short-time Fourier domain.

A glottal pulse train along an f0 contour (with jitter, shimmer and aspiration) and a noise
source are filtered frame by frame: formant resonances following the phone sequence, a source
slope, a frication band and the utterance's channel, then resynthesised by overlap-add (a
time-varying filter with no per-sample Python loop). Shapes: ``T`` samples, ``F`` STFT frames,
``K`` frequency bins.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from scipy.ndimage import convolve1d
from scipy.signal import istft, lfilter, stft
from scipy.signal.windows import hann

from speechbrain_dino.synthetic.phones import (
    CONSONANTS,
    FORMANT_HALF_BANDWIDTHS,
    FORMANTS,
    FRICATION,
    NOISE_CENTRE,
    NOISE_WIDTH,
    PHONES,
    SEGMENT_ID,
    SEGMENTS,
    SILENCE,
    VOICING,
    VOWELS,
)
from speechbrain_dino.synthetic.voices import (
    EMOTIONS,
    UTTERANCE_STREAM,
    Prosody,
    Speaker,
    random_stream,
    speaker_traits,
)

#: Parts of an utterance's random stream: content, intonation, source noise, channel.
_CONTENT, _INTONATION, _SOURCE, _CHANNEL = range(4)
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
        return list(zip((SEGMENT_ID[name] for name in names), samples))

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
    targets = FORMANTS[segment_of_frame] * traits.vowel_space[segment_of_frame]
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
    centre = traits.formant_scale * NOISE_CENTRE[segment_of_frame, None]
    width = NOISE_WIDTH[segment_of_frame, None]
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
        random_stream(seed, UTTERANCE_STREAM, speaker, utterance, part)
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
    half_bandwidths = FORMANT_HALF_BANDWIDTHS * traits.bandwidth_scale
    tilt_db = traits.tilt_db + prosody.tilt_db + channel.normal(0.0, 0.7)
    channel_log = _db_to_log(_channel_db(channel, frequencies))
    source_log = _db_to_log(tilt_db * np.log2(1.0 + frequencies / _SOURCE_CORNER_HZ))
    level_frames = max(3, round(0.02 / hop_seconds))
    voice *= _smooth(VOICING[segment_of_frame], level_frames)[:, None] * np.exp(
        _log_formant_response(frequencies, formants, half_bandwidths) + source_log + channel_log
    )
    frication *= _smooth(FRICATION[segment_of_frame], level_frames)[:, None]
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
