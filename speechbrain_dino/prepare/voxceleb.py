"""VoxCeleb1/2: ``.../idXXXXX/VIDEO/NNNNN.wav`` → ID ``idXXXXX--VIDEO--NNNNN``, ``spk_id`` idXXXXX.

``data_folder`` may be any folder above the speaker folders (VoxCeleb1 ``wav/``, VoxCeleb2 ``aac/``
or ``dev/``, or the root holding them): only the last three path components matter. The ID follows
SpeechBrain's VoxCeleb recipes, so a trial path ``id10270/x6uYqmx31kE/00001.wav`` maps to
``id10270--x6uYqmx31kE--00001``.

VoxCeleb2 ships AAC ``.m4a`` files, which soundfile cannot decode. Either convert them beforehand
(``ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav``) or pass ``convert_folder``: each ``.m4a`` is then
converted once with ffmpeg to a mono wav at ``sample_rate`` under ``convert_folder`` (same relative
path, existing conversions are reused) and the manifest points to the wav.

``exclude_trials`` (VoxCeleb1-O/E/H lists such as ``veri_test2.txt``, lines ``label path1 path2``)
removes every utterance of a speaker that appears in them, e.g. to train on VoxCeleb1 dev + test
without touching test speakers; the report gives ``trial_speakers``, ``excluded_speakers`` (those
found in ``data_folder``) and ``excluded_utterances``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Set

from speechbrain_dino.data.audio import AUDIO_EXTENSIONS
from speechbrain_dino.errors import DataError, PathLike
from speechbrain_dino.prepare.common import (
    ScanReport,
    Skip,
    Utterance,
    find_audio,
    label_files,
    run_preparation,
    split_name,
)

logger = logging.getLogger(__name__)

SPEAKER_PATTERN = re.compile(r"^id\d+$")
AAC_EXTENSION = ".m4a"
TRIAL_LABELS = ("0", "1")


def prepare_voxceleb(
    data_folder: PathLike,
    save_csv: PathLike,
    exclude_trials: Sequence[PathLike] = (),
    convert_folder: Optional[PathLike] = None,
    sample_rate: int = 16000,
    resample: bool = False,
    min_duration: float = 0.5,
    skip_invalid: bool = True,
) -> Dict[str, object]:
    """Writes a manifest ``ID,duration,wav,spk_id`` of a VoxCeleb1 or VoxCeleb2 folder.

    Arguments
    ---------
    data_folder : PathLike
        A folder above the ``idXXXXX`` speaker folders.
    save_csv : PathLike
        The manifest to write.
    exclude_trials : sequence of PathLike
        Trial lists whose speakers are left out (``trial_speaker`` in the report).
    convert_folder : PathLike, optional
        Where ``.m4a`` files are converted to wav with ffmpeg (outside ``data_folder``); without it
        an ``.m4a`` file is a :class:`DataError`.
    sample_rate, resample, min_duration, skip_invalid
        See :mod:`speechbrain_dino.prepare.common`.

    Returns
    -------
    dict
        The report of :func:`~speechbrain_dino.prepare.common.run_preparation`, with
        ``trial_speakers``, ``excluded_speakers``, ``excluded_utterances`` and ``converted_files``.
    """
    trial_lists = [os.path.abspath(os.fspath(path)) for path in exclude_trials]
    trial_speakers = read_trial_speakers(trial_lists)
    convert_root = None if convert_folder is None else os.path.abspath(os.fspath(convert_folder))

    def scan(folder: str, scan_report: ScanReport) -> List[Utterance]:
        paths = find_audio(folder, AUDIO_EXTENSIONS + (AAC_EXTENSION,))
        aac = [path for path in paths if path.lower().endswith(AAC_EXTENSION)]
        if aac:
            paths = [path for path in paths if not path.lower().endswith(AAC_EXTENSION)]
            paths += convert_aac(aac, folder, convert_root, sample_rate, scan_report)
        excluded: Set[str] = set()

        def label(path: str) -> Utterance:
            video_folder = os.path.dirname(path)
            video = os.path.basename(video_folder)
            speaker = os.path.basename(os.path.dirname(video_folder))
            stem, _ = split_name(path)
            if not (SPEAKER_PATTERN.match(speaker) and video and stem.isdigit()):
                raise Skip("unexpected_name", "expected idXXXXX/VIDEO/NNNNN.wav")
            if speaker in trial_speakers:
                excluded.add(speaker)
                raise Skip("trial_speaker", f"{speaker} appears in the trial lists")
            return Utterance(f"{speaker}--{video}--{stem}", path, {"spk_id": speaker})

        utterances = label_files(sorted(paths), label, scan_report)
        scan_report.notes.update(
            trial_speakers=len(trial_speakers),
            excluded_speakers=len(excluded),
            excluded_utterances=scan_report.counts["trial_speaker"],
            converted_files=len(aac),
        )
        return utterances

    options = {"exclude_trials": trial_lists, "convert_folder": convert_root}
    return run_preparation(
        "voxceleb",
        data_folder,
        save_csv,
        scan,
        options,
        sample_rate,
        resample,
        min_duration,
        skip_invalid,
    )


def read_trial_speakers(trial_lists: Sequence[str]) -> Set[str]:
    """The speakers (first path component) of every trial in the lists.

    Raises
    ------
    DataError
        A missing list, or a line that is not ``label path1 path2`` (naming file and line).
    """
    speakers: Set[str] = set()
    for path in trial_lists:
        if not os.path.isfile(path):
            raise DataError("trial list not found", path)
        with open(path, encoding="utf-8") as fin:
            for number, line in enumerate(fin, start=1):
                fields = line.split()
                if not fields:
                    continue
                if (
                    len(fields) != 3
                    or fields[0] not in TRIAL_LABELS
                    or not all("/" in f for f in fields[1:])
                ):
                    raise DataError(
                        "expected 'label path1 path2' with label 0 or 1 and paths "
                        "idXXXXX/VIDEO/NNNNN.wav",
                        path,
                        number,
                    )
                speakers.update(field.split("/")[0] for field in fields[1:])
    return speakers


def convert_aac(
    aac_paths: Sequence[str],
    data_folder: str,
    convert_root: Optional[str],
    sample_rate: int,
    scan_report: ScanReport,
) -> List[str]:
    """Converts ``.m4a`` files to mono wav under ``convert_root`` with ffmpeg; returns the wavs.

    Files already converted are reused; a file ffmpeg fails on is ``unreadable``.

    Raises
    ------
    DataError
        No ``convert_root`` (telling how to convert), one inside ``data_folder``, or no ffmpeg.
    """
    if convert_root is None:
        raise DataError(
            f"{len(aac_paths)} .m4a file(s) (VoxCeleb2 AAC), e.g. {aac_paths[0]}: soundfile cannot "
            "decode m4a; convert them to wav first (ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav) or "
            "pass convert_folder=DIR (--convert_folder DIR) to convert them with ffmpeg",
            data_folder,
        )
    if os.path.commonpath([convert_root, data_folder]) == data_folder:
        raise DataError(
            "convert_folder must be outside data_folder (it would be scanned again)", convert_root
        )
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise DataError(
            "ffmpeg not found on PATH: install it or convert the .m4a files to wav yourself"
        )
    targets = [
        os.path.join(convert_root, os.path.splitext(os.path.relpath(path, data_folder))[0] + ".wav")
        for path in aac_paths
    ]
    logger.info("converting %d .m4a file(s) into %s with ffmpeg", len(aac_paths), convert_root)

    def convert(source: str, target: str) -> Optional[str]:
        if os.path.isfile(target):
            return None
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = target + ".part"
        command = [
            ffmpeg,
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            source,
            "-ac",
            "1",
            "-ar",
            str(sample_rate),
            "-c:a",
            "pcm_s16le",
            "-f",
            "wav",
            partial,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            return f"ffmpeg failed: {(result.stderr.strip().splitlines() or ['no message'])[-1]}"
        os.replace(partial, target)
        return None

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        failures = list(pool.map(convert, aac_paths, targets))
    converted = []
    for source, target, failure in zip(aac_paths, targets, failures):
        if failure is None:
            converted.append(target)
        else:
            scan_report.skip("unreadable", source, failure)
    return converted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`prepare_voxceleb` for the command line."""
    parser.add_argument(
        "--exclude_trials",
        nargs="+",
        default=argparse.SUPPRESS,
        metavar="TRIALS",
        help="trial lists (label path1 path2) whose speakers are left out",
    )
    parser.add_argument(
        "--convert_folder",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="convert .m4a files (VoxCeleb2) to wav here with ffmpeg",
    )
