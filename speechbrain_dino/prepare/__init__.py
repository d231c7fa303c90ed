"""Data preparation: one module per corpus, each writing a manifest (see :mod:`..manifest`).

Every ``prepare_<corpus>(data_folder, save_csv, ..., sample_rate=16000, resample=False,
min_duration=..., skip_invalid=True)`` scans a corpus in its published layout, reads audio headers
(durations, sample rates), writes ``save_csv`` (absolute wav paths) and returns a report dict
(utterances, speakers, hours, skipped rows per reason). A second call with the same options reuses
the manifest. The shared behaviour (skip reasons, sample rates, reuse) is documented in
:mod:`speechbrain_dino.prepare.common`; the command line is
``python -m speechbrain_dino.prepare CORPUS --data_folder DIR --save_csv FILE [options]``.

Emotion labels are written as lowercase names shared across corpora (RAVDESS's spelling: neutral,
calm, happy, sad, angry, fearful, disgust, surprised; plus contempt, excited, frustrated, other,
no_agreement where a corpus has them), so a classifier sees the same label for the same emotion.
"""

from __future__ import annotations

from speechbrain_dino.prepare import (
    cremad,
    folder,
    iemocap,
    librispeech,
    msp_podcast,
    ravdess,
    voxceleb,
)
from speechbrain_dino.prepare.cremad import prepare_cremad
from speechbrain_dino.prepare.folder import prepare_folder
from speechbrain_dino.prepare.iemocap import prepare_iemocap
from speechbrain_dino.prepare.librispeech import prepare_librispeech
from speechbrain_dino.prepare.msp_podcast import prepare_msp_podcast
from speechbrain_dino.prepare.ravdess import prepare_ravdess
from speechbrain_dino.prepare.voxceleb import prepare_voxceleb

#: Corpus name (the command line's subcommand) → (prepare function, its module).
CORPORA = {
    "voxceleb": (prepare_voxceleb, voxceleb),
    "librispeech": (prepare_librispeech, librispeech),
    "ravdess": (prepare_ravdess, ravdess),
    "cremad": (prepare_cremad, cremad),
    "iemocap": (prepare_iemocap, iemocap),
    "msp_podcast": (prepare_msp_podcast, msp_podcast),
    "folder": (prepare_folder, folder),
}

__all__ = [
    "CORPORA",
    "prepare_cremad",
    "prepare_folder",
    "prepare_iemocap",
    "prepare_librispeech",
    "prepare_msp_podcast",
    "prepare_ravdess",
    "prepare_voxceleb",
]
