"""The real-speech study's data: a pretraining pool and three evaluation sets, speaker-disjoint.

From the benchmark data folder (read-only; derived files go to the study's own folder):

- ``pretrain.csv``: RAVDESS actors 1-16 + the LibriSpeech speakers not held out + the speechocean762
  speakers in neither its test nor its dev group (83 speakers x 10 utterances). Pretraining and
  pseudo-labelling read only ``wav``/``duration``; the true ``spk_id`` is kept for the NMI report and
  for the "AAM on true labels" upper bound.
- ``ravdess_test.csv`` + ``ravdess_trials.txt``: actors 17-24, every target pair crossing emotion
  and sentence, every non-target pair (text-dependent material, so crossing is what makes it hard).
  The same manifest serves the emotion folds.
- ``librispeech_test.csv`` + ``librispeech_trials.txt``: a quarter of the LibriSpeech speakers whose
  utterance lasts at least ``MIN_SPLIT_SECONDS``; each utterance is cut into two halves (written as
  WAV files), the two halves of a speaker are its target trial, all cross-speaker pairs are the
  non-targets (same session, so easier than cross-session trials).
- ``speechocean_test.csv`` + ``speechocean_trials.txt``: every ``SPEECHOCEAN_HELD_OUT_EVERY``-th
  speechocean762 speaker in sorted id order (25 of 125: children and adults, both sexes), all ten
  utterances each; every pair of two different utterances is a trial (text-independent: each
  utterance is another sentence; same session).
- ``dev.csv`` + ``dev_trials.txt``: every ``SPEECHOCEAN_DEV_EVERY``-th of the remaining 100
  speechocean762 speakers (17), trials built the same way: the per-epoch validation set of the
  study's trainings (learning curves, choosing settings), never a test set.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Sequence, Set

import soundfile

from speechbrain_dino.data.audio import load_audio
from speechbrain_dino.data.manifest import Row, read_manifest, write_manifest
from speechbrain_dino.prepare.folder import prepare_folder
from speechbrain_dino.prepare.librispeech import prepare_librispeech
from speechbrain_dino.prepare.ravdess import prepare_ravdess
from speechbrain_dino.verification.trial_generation import generate_trials
from speechbrain_dino.verification.trials import write_trials

HELD_OUT_ACTORS = range(17, 25)
MIN_SPLIT_SECONDS = 4.0
LIBRISPEECH_HELD_OUT_EVERY = 4
SPEECHOCEAN_HELD_OUT_EVERY = 5
SPEECHOCEAN_DEV_EVERY = 6
SAMPLE_RATE = 16000


@dataclasses.dataclass
class StudyData:
    """Paths of the study's manifests and trial lists, and what must never reach training."""

    pretrain_csv: str
    ravdess_test_csv: str
    ravdess_trials: str
    librispeech_test_csv: str
    librispeech_trials: str
    speechocean_test_csv: str
    speechocean_trials: str
    dev_csv: str
    dev_trials: str
    eval_speakers: Set[str]
    eval_sources: Set[str]  # audio files the evaluation sets were made from


def sentence(row: Row) -> str:
    """RAVDESS statement (01 or 02), the fifth field of the file name."""
    return row["ID"].split("-")[4]


def split_halves(rows: Sequence[Row], folder: str) -> List[Row]:
    """Two rows per utterance, ``<ID>_a`` and ``<ID>_b``, each a WAV of one half of it."""
    os.makedirs(folder, exist_ok=True)
    halves = []
    for row in rows:
        signal = load_audio(row["wav"], SAMPLE_RATE).numpy()
        middle = len(signal) // 2
        for suffix, part in (("a", signal[:middle]), ("b", signal[middle:])):
            path = os.path.join(folder, f"{row['ID']}_{suffix}.wav")
            if not os.path.isfile(path):
                soundfile.write(path, part, SAMPLE_RATE, subtype="PCM_16")
            halves.append(dict(row, ID=f"{row['ID']}_{suffix}", wav=path, duration=f"{len(part) / SAMPLE_RATE:.3f}"))
    return halves


def prepare_study_data(shared_data: str, folder: str) -> StudyData:
    """Writes the manifests and trials into ``folder``; asserts the evaluation sets are unseen."""
    os.makedirs(folder, exist_ok=True)
    prepare_ravdess(os.path.join(shared_data, "ravdess"), os.path.join(folder, "ravdess.csv"))
    prepare_librispeech(os.path.join(shared_data, "librispeech_251"), os.path.join(folder, "librispeech.csv"))
    prepare_folder(os.path.join(shared_data, "speechocean762_train"), os.path.join(folder, "speechocean.csv"))
    ravdess = read_manifest(os.path.join(folder, "ravdess.csv"))
    speechocean = [dict(row, spk_id="so" + row["spk_id"]) for row in read_manifest(os.path.join(folder, "speechocean.csv"))]
    librispeech = [dict(row, spk_id="ls" + row["spk_id"]) for row in read_manifest(os.path.join(folder, "librispeech.csv"))]

    ravdess_test = [row for row in ravdess if int(row["spk_id"]) in HELD_OUT_ACTORS]
    splittable = sorted((row for row in librispeech if float(row["duration"]) >= MIN_SPLIT_SECONDS), key=lambda row: row["spk_id"])
    librispeech_held_out = splittable[::LIBRISPEECH_HELD_OUT_EVERY]
    held_out_ids = {row["ID"] for row in librispeech_held_out}
    pretrain = [row for row in ravdess if int(row["spk_id"]) not in HELD_OUT_ACTORS]
    pretrain += [row for row in librispeech if row["ID"] not in held_out_ids]
    speechocean_speakers = sorted({row["spk_id"] for row in speechocean})
    speechocean_held_out = set(speechocean_speakers[::SPEECHOCEAN_HELD_OUT_EVERY])
    speechocean_dev = set([spk for spk in speechocean_speakers if spk not in speechocean_held_out][1::SPEECHOCEAN_DEV_EVERY])
    speechocean_test = [row for row in speechocean if row["spk_id"] in speechocean_held_out]
    dev = [row for row in speechocean if row["spk_id"] in speechocean_dev]
    pretrain += [row for row in speechocean if row["spk_id"] not in speechocean_held_out | speechocean_dev]
    librispeech_test = split_halves(librispeech_held_out, os.path.join(folder, "librispeech_halves"))

    data = StudyData(
        pretrain_csv=os.path.join(folder, "pretrain.csv"),
        ravdess_test_csv=os.path.join(folder, "ravdess_test.csv"),
        ravdess_trials=os.path.join(folder, "ravdess_trials.txt"),
        librispeech_test_csv=os.path.join(folder, "librispeech_test.csv"),
        librispeech_trials=os.path.join(folder, "librispeech_trials.txt"),
        speechocean_test_csv=os.path.join(folder, "speechocean_test.csv"),
        speechocean_trials=os.path.join(folder, "speechocean_trials.txt"),
        dev_csv=os.path.join(folder, "dev.csv"),
        dev_trials=os.path.join(folder, "dev_trials.txt"),
        eval_speakers={row["spk_id"] for row in ravdess_test + librispeech_held_out + speechocean_test + dev},
        eval_sources={row["wav"] for row in ravdess_test + librispeech_held_out + speechocean_test + dev},
    )
    write_manifest(pretrain, data.pretrain_csv)
    write_manifest(ravdess_test, data.ravdess_test_csv)
    write_manifest(librispeech_test, data.librispeech_test_csv)
    write_manifest(speechocean_test, data.speechocean_test_csv)
    write_manifest(dev, data.dev_csv)
    write_trials(generate_trials(ravdess_test, cross=["emotion", sentence], seed=0), data.ravdess_trials)
    write_trials(generate_trials(librispeech_test, seed=0), data.librispeech_trials)
    write_trials(generate_trials(speechocean_test, seed=0), data.speechocean_trials)
    write_trials(generate_trials(dev, seed=0), data.dev_trials)
    assert_unseen(data.pretrain_csv, data, labelled=True)
    return data


def assert_unseen(csv_path: str, data: StudyData, labelled: bool) -> None:
    """Fails when a manifest used for training or pseudo-labelling touches an evaluation set.

    Every manifest is checked by audio file (halves of held-out LibriSpeech utterances count as
    their source file); one with true labels (``labelled``) also by speaker.
    """
    rows = read_manifest(csv_path)
    leaked_files = {row["wav"] for row in rows} & data.eval_sources
    assert not leaked_files, f"{csv_path}: {len(leaked_files)} evaluation file(s) in training data"
    if labelled:
        leaked_speakers = {row["spk_id"] for row in rows} & data.eval_speakers
        assert not leaked_speakers, f"{csv_path}: evaluation speaker(s) {sorted(leaked_speakers)[:5]} in training data"


def describe(data: StudyData) -> Dict[str, str]:
    """One line per set: utterances, speakers, trials (for the study's report)."""
    lines = {}
    for name, csv_path, trials in (
        ("pretraining pool", data.pretrain_csv, None),
        ("RAVDESS actors 17-24", data.ravdess_test_csv, data.ravdess_trials),
        ("LibriSpeech held-out halves", data.librispeech_test_csv, data.librispeech_trials),
        ("speechocean762 held-out speakers", data.speechocean_test_csv, data.speechocean_trials),
        ("development set (speechocean762 speakers)", data.dev_csv, data.dev_trials),
    ):
        rows = read_manifest(csv_path)
        hours = sum(float(row["duration"]) for row in rows) / 3600
        text = f"{len(rows)} utterances, {len({row['spk_id'] for row in rows})} speakers, {hours * 60:.0f} min"
        if trials:
            with open(trials, encoding="utf-8") as fin:
                labels = [line.split()[0] for line in fin if line.strip()]
            text += f"; {labels.count('1'):,} target + {labels.count('0'):,} non-target trials"
        lines[name] = text
    return lines
