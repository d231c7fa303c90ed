"""Crash-safe checkpoints: a checkpoint becomes visible only once every file of it is written.

SpeechBrain's ``Checkpointer`` creates ``save/CKPT+<time>/``, writes ``CKPT.yaml`` first and the
model files after it, and recovery takes the newest folder holding a ``CKPT.yaml``. A process
killed (or a disk filled) in between leaves a newest checkpoint that cannot be loaded, and every
rerun fails on it. :class:`AtomicCheckpointer` writes each checkpoint into a staging folder
(``save/.staging+CKPT+<time>/``, invisible to SpeechBrain's listing), flushes it to disk and only
then renames it to its ``CKPT+...`` name, in one ``os.replace``. Recovery reports and removes a
staging folder left by an interrupted save, skips (and reports) any ``CKPT+...`` folder that lacks
a file of a required recoverable (written by an older, non-atomic run), and so falls back to the
newest complete checkpoint. A failed write (a full disk) removes the staging folder and ends in one
clear error; rerunning resumes from the previous checkpoint.

Under DDP only the main process creates, publishes and removes folders; every rank reaches a
barrier after the savers ran, so the rename happens after all writes.
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil
from typing import List, Set

from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_dino.errors import DataError

logger = logging.getLogger(__name__)

#: Name prefix of a checkpoint folder being written (SpeechBrain lists only ``CKPT*`` folders).
STAGING_PREFIX = ".staging+"


def _fsync_tree(folder: pathlib.Path) -> None:
    """Flushes every file of ``folder``, then the folder itself, to the disk."""
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's ``Checkpointer`` whose checkpoints are complete or absent (see the module).

    Same arguments and API as ``speechbrain.utils.checkpoints.Checkpointer``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._reported: Set[pathlib.Path] = set()

    # ------------------------------------------------------------------ saving
    def _new_checkpoint_dirpath(self) -> pathlib.Path:
        """SpeechBrain's new checkpoint name, in its staging form."""
        return self._staging(super()._new_checkpoint_dirpath())

    def _custom_checkpoint_dirpath(self, name: str) -> pathlib.Path:
        """SpeechBrain's named checkpoint path, in its staging form."""
        return self._staging(super()._custom_checkpoint_dirpath(name))

    def _staging(self, final: pathlib.Path) -> pathlib.Path:
        """The staging folder of the checkpoint folder ``final``."""
        return final.parent / (STAGING_PREFIX + final.name)

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Writes the checkpoint into its staging folder, then publishes it with one rename.

        Raises
        ------
        DataError
            A file could not be written (e.g. no space left on the device); the partial
            checkpoint is removed, the previous ones are kept.
        """
        if if_main_process():
            self.remove_interrupted_saves()
        try:
            checkpoint = super().save_checkpoint(meta or {}, end_of_epoch, name, verbosity=logging.DEBUG)
        except OSError as error:
            self._discard_staging()
            raise DataError(
                f"cannot write a checkpoint ({error.strerror or error}); the previous checkpoints "
                "are intact: free space or fix the folder, then rerun to resume",
                self.checkpoints_dir,
            ) from None
        ddp_barrier()
        if checkpoint is None:  # not the main process
            return None
        final = checkpoint.path.parent / checkpoint.path.name[len(STAGING_PREFIX):]
        _fsync_tree(checkpoint.path)
        if final.exists():  # a named checkpoint saved again
            shutil.rmtree(final)
        os.replace(checkpoint.path, final)
        paramfiles = {key: final / path.name for key, path in checkpoint.paramfiles.items()}
        kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
        logger.log(verbosity, f"Saved an {kind} checkpoint in {final}")
        return checkpoint._replace(path=final, paramfiles=paramfiles)

    def _discard_staging(self) -> None:
        """Removes the staging folders of this process's failed save (main process only)."""
        if if_main_process():
            for folder in self._staging_folders():
                shutil.rmtree(folder, ignore_errors=True)

    def _staging_folders(self) -> List[pathlib.Path]:
        """Staging folders present in the checkpoints folder."""
        return [path for path in self.checkpoints_dir.iterdir() if path.name.startswith(STAGING_PREFIX)]

    def remove_interrupted_saves(self) -> None:
        """Reports and removes staging folders left by a save that did not finish."""
        for folder in self._staging_folders():
            logger.warning(f"Removing an incomplete checkpoint (its save was interrupted): {folder}")
            shutil.rmtree(folder, ignore_errors=True)

    # ---------------------------------------------------------------- recovery
    def recover_if_possible(self, *args, **kwargs):
        """SpeechBrain's recovery from the newest complete checkpoint, interrupted saves removed."""
        if if_main_process():
            self.remove_interrupted_saves()
        ddp_barrier()
        return super().recover_if_possible(*args, **kwargs)

    def list_checkpoints(self):
        """The complete checkpoints; incomplete ones (a required file missing) are reported once
        and left out, so recovery falls back to the previous checkpoint."""
        complete = []
        for checkpoint in super().list_checkpoints():
            missing = self.missing_files(checkpoint)
            if not missing:
                complete.append(checkpoint)
            elif checkpoint.path not in self._reported:
                self._reported.add(checkpoint.path)
                logger.warning(f"Skipping the incomplete checkpoint {checkpoint.path} (no {', '.join(missing)})")
        return complete

    def missing_files(self, checkpoint) -> List[str]:
        """Required recoverables without a file in ``checkpoint`` (those SpeechBrain's loading
        tolerates missing are not required: optional ones and data loaders)."""
        if self.allow_partial_load:
            return []
        return [
            name for name in self.recoverables
            if name not in checkpoint.paramfiles
            and not self.optional_recoverables.get(name, False)
            and "dataloader" not in name
        ]

