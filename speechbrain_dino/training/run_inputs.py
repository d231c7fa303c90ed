"""An output folder belongs to one training run: the inputs it was started with are recorded,
and a rerun with other inputs is refused instead of resuming the old run's checkpoints.

A training recipe resumes whatever checkpoint its ``--output_folder`` holds. Rerun with another
``--train_csv`` (or, for AAM, another ``--init_from``), it would silently continue, or skip, the
old training and export it under the new inputs' names. :func:`claim_output_folder` writes
``training_inputs.json`` (each input's path and SHA-256) on the first run and compares it on every
rerun: the same content (even moved) resumes, other content is a :class:`DataError`.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Mapping

from speechbrain.utils.distributed import ddp_barrier, run_on_main

from speechbrain_dino.errors import DataError, PathLike

#: The record of a training run's inputs, in its output folder.
INPUTS_FILE = "training_inputs.json"


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes (DataError when it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open(os.fspath(path), "rb") as fin:
            for block in iter(lambda: fin.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise DataError(f"cannot read ({error.strerror})", path) from None
    return digest.hexdigest()


def _write_record(path: str, record: Dict[str, Dict[str, str]]) -> None:
    """Writes the inputs' record (main process)."""
    with open(path, "w", encoding="utf-8") as fout:
        json.dump(record, fout, indent=2)


def claim_output_folder(output_folder: PathLike, inputs: Mapping[str, PathLike]) -> None:
    """Records ``inputs`` in ``output_folder``, or checks them against the record there.

    Arguments
    ---------
    output_folder : PathLike
        The run's folder (already created).
    inputs : mapping
        ``{setting name: file}``, e.g. ``{"train_csv": ...}``.

    Raises
    ------
    DataError
        The folder was started with an input of other content.
    """
    record = {key: {"path": os.path.abspath(os.fspath(path)), "sha256": file_sha256(path)}
              for key, path in inputs.items()}
    path = os.path.join(os.fspath(output_folder), INPUTS_FILE)
    previous = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fin:
            previous = json.load(fin)
    ddp_barrier()  # under DDP every rank looks before the main process writes
    if previous is None:
        run_on_main(_write_record, args=[path, record])
        return
    for key, current in record.items():
        before = previous.get(key)
        if before is not None and before["sha256"] != current["sha256"]:
            raise DataError(
                f"was trained with --{key}={before['path']}, not {current['path']} (other content): "
                f"use a new --output_folder, or rerun with the same {key} to resume",
                output_folder,
            )
