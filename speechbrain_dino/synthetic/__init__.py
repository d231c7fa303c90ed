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

Modules: :mod:`~speechbrain_dino.synthetic.phones` (the segment inventory),
:mod:`~speechbrain_dino.synthetic.voices` (speakers and emotions),
:mod:`~speechbrain_dino.synthetic.synthesis` (one utterance), :mod:`~speechbrain_dino.synthetic.corpus`
(the corpus on disk); ``python -m speechbrain_dino.synthetic`` is the command line.
"""
