"""Whether a checkpoint folder can be loaded, judged from its files before any of them is loaded.

A checkpoint copied wrongly or read from a failing disk may hold an empty or malformed
``CKPT.yaml`` or a truncated model file. SpeechBrain would read the metadata as ``None`` or stop
in ``torch.load``, before trying an older checkpoint. :func:`read_metadata` and
:func:`check_files` find such damage first, so that recovery can skip the checkpoint without
having loaded part of it (a half-loaded checkpoint would leave e.g. a data loader's position
behind). The checks: ``CKPT.yaml`` is a mapping with SpeechBrain's keys; no file is empty; every
``torch.save`` archive (a zip file) is complete and its members match their CRC-32 checksums
(members stored with a zero checksum, as torch writes them when ``compute_crc32`` is off, are not
checked). SpeechBrain's small text files (``brain.ckpt``, the epoch counter) are only checked for
being non-empty.
"""
from __future__ import annotations

import pathlib
import zipfile
import zlib
from typing import Any, Dict, Iterable

import yaml
from speechbrain.utils.checkpoints import METAFNAME

from speechbrain_dino.errors import first_line

#: Keys SpeechBrain writes into every ``CKPT.yaml`` and reads when choosing and loading.
METADATA_KEYS = ("unixtime", "end-of-epoch")
#: The first bytes of a zip archive (what ``torch.save`` writes).
ZIP_MAGIC = b"PK\x03\x04"
#: Bytes read at a time when checking an archive member.
_BLOCK = 1 << 20


class DamagedCheckpoint(Exception):
    """A checkpoint folder that cannot be loaded; the message says which file and why."""


def read_metadata(folder: pathlib.Path) -> Dict[str, Any]:
    """The checkpoint's ``CKPT.yaml`` as a mapping.

    Raises
    ------
    DamagedCheckpoint
        The file cannot be read, is empty, is not YAML, or lacks ``unixtime`` / ``end-of-epoch``.
    """
    path = folder / METAFNAME
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DamagedCheckpoint(f"{METAFNAME} cannot be read ({first_line(error)})") from None
    if meta is None:
        raise DamagedCheckpoint(f"{METAFNAME} is empty")
    missing = [key for key in METADATA_KEYS if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise DamagedCheckpoint(f"{METAFNAME} lacks {', '.join(missing)}")
    return meta


def check_files(paths: Iterable[pathlib.Path]) -> None:
    """Checks a checkpoint's files (see the module).

    Raises
    ------
    DamagedCheckpoint
        The first file found empty, unreadable, truncated or failing a checksum.
    """
    for path in paths:
        try:
            _check_file(path)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise DamagedCheckpoint(f"{path.name} is truncated or damaged ({first_line(error)})") from None


def _check_file(path: pathlib.Path) -> None:
    """Raises DamagedCheckpoint for an empty file, or zipfile's error for a damaged archive."""
    with open(path, "rb") as handle:
        magic = handle.read(len(ZIP_MAGIC))
    if not magic:
        raise DamagedCheckpoint(f"{path.name} is empty")
    if magic != ZIP_MAGIC:
        return
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if member.CRC == 0:
                continue
            with archive.open(member) as data:  # reading to the end checks the CRC-32
                while data.read(_BLOCK):
                    pass
