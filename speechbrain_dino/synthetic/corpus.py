"""The generated corpus on disk: its options, one WAV per utterance, and its manifest.

Utterance ``(speaker, utt)`` has a random length from its own stream, the emotion
``EMOTION_NAMES[(speaker + utt) % emotions]`` (balanced within speaker) and is written as
``wav/spkNNN/spkNNN_uttMMMM.wav``; ``manifest.csv`` lists them and ``synthetic.json`` records the
options, so a folder holding the same corpus is reused and a different one is refused.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import soundfile as sf

from speechbrain_dino.data.manifest import Row, read_manifest, write_manifest
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.synthetic.synthesis import synthesize_utterance
from speechbrain_dino.synthetic.voices import EMOTION_NAMES, LENGTH_STREAM, random_stream

#: Bumped whenever the synthesiser's output changes, so an old corpus is not mistaken for a new one.
GENERATOR_VERSION = 1
OPTIONS_FILE = "synthetic.json"
MANIFEST_FILE = "manifest.csv"


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
    rng = random_stream(options.seed, LENGTH_STREAM, speaker, utterance)
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
