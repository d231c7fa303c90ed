"""Crash-safe checkpoints: published only once complete and durable; recovery skips damaged ones.

SpeechBrain's ``Checkpointer`` creates ``save/CKPT+<time>/``, writes ``CKPT.yaml`` first and the
model files after it, and recovery takes the newest folder holding a ``CKPT.yaml``. A process
killed (or a disk filled) in between leaves a newest checkpoint that cannot be loaded, and every
rerun fails on it. :class:`AtomicCheckpointer` writes each checkpoint into a staging folder
(``save/.staging+CKPT+<time>/``, invisible to SpeechBrain's listing), flushes it to disk, renames
it to its ``CKPT+...`` name in one ``os.replace`` and flushes ``save/`` itself, so the new name
survives a power loss before any older checkpoint is deleted.

Recovery reports and removes a staging folder left by an interrupted save. It then tries the
checkpoints newest first and skips, with one log line each and without deleting them, those that
cannot be loaded: a required file missing (written by an older, non-atomic run), an empty or
malformed ``CKPT.yaml``, an empty, truncated or corrupted file
(:mod:`~speechbrain_dino.training.checkpoint_files`). These checks run before anything is
loaded, so every recoverable comes from the chosen checkpoint. When checkpoints exist but none can
be loaded, recovery stops with an error rather than silently training afresh. A checkpoint that
passes the checks but still fails to load (e.g. saved with other model settings) is an error too.

A failed write (full disk, file-size limit, read-only folder: an ``OSError``, or torch's
``RuntimeError``, see :mod:`speechbrain_dino.write_failures`) removes the staging folder and ends
in one error naming the folder; the previous checkpoints are kept and a rerun resumes from them.

Under DDP only the main process creates, publishes and removes folders. After the savers ran,
every rank learns whether a write failed anywhere (:func:`~speechbrain_dino.training.rank_agreement.any_rank`),
so they raise together and the rename happens after all writes; and every rank waits for the
rename, so that all of them then list the same checkpoints (SpeechBrain's deletion of old ones
runs a collective per deleted checkpoint: ranks that listed the folder before and after the
rename would wait for each other forever).
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil
from typing import Dict, List, Optional

from speechbrain.utils.checkpoints import Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from speechbrain_dino.data.write_failures import is_write_failure, write_failure_reason
from speechbrain_dino.errors import DataError
from speechbrain_dino.training.checkpoint_files import DamagedCheckpoint, check_files, read_metadata
from speechbrain_dino.training.rank_agreement import any_rank

logger = logging.getLogger(__name__)

#: Name prefix of a checkpoint folder being written (SpeechBrain lists only ``CKPT*`` folders).
STAGING_PREFIX = ".staging+"


def _fsync(path: pathlib.Path) -> None:
    """Flushes a file or a folder (its entries) to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(folder: pathlib.Path) -> None:
    """Flushes every file of ``folder``, then the folder itself, to the disk."""
    for path in folder.iterdir():
        _fsync(path)
    _fsync(folder)


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's ``Checkpointer`` whose checkpoints are complete or absent (see the module).

    Same arguments and API as ``speechbrain.utils.checkpoints.Checkpointer``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: Checkpoint folders found damaged, with why (each logged once, when found).
        self.damaged: Dict[pathlib.Path, str] = {}
        #: Whether the current save got past writing ``CKPT.yaml`` (see :meth:`save_checkpoint`).
        self._announced = False

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
        """Writes the checkpoint into its staging folder, then publishes it (see the module).

        Under DDP the ranks agree twice: after the savers (did a write fail anywhere?) and after
        the main process published (every rank lists the folder afterwards, e.g. to delete old
        checkpoints, and must see the same checkpoints).

        Raises
        ------
        DataError
            A file could not be written (on any rank); the partial checkpoint is removed, the
            previous ones are kept.
        """
        if if_main_process():
            self.remove_interrupted_saves()
        failure: Optional[BaseException] = None
        staged = checkpoint = None
        self._announced = False
        try:
            staged = super().save_checkpoint(meta or {}, end_of_epoch, name, verbosity=logging.DEBUG)
        except (OSError, RuntimeError) as error:
            if not is_write_failure(error):
                raise
            if if_main_process() and not self._announced:  # the others still wait for its name
                raise self._write_error(error) from None
            failure = error
        if any_rank(failure is not None):
            raise self._write_error(failure)
        if staged is not None:  # the main process
            try:
                checkpoint = self._publish(staged)
            except OSError as error:
                failure = error
        if any_rank(failure is not None):
            raise self._write_error(failure)
        if checkpoint is not None:
            kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
            logger.log(verbosity, f"Saved an {kind} checkpoint in {checkpoint.path}")
        return checkpoint

    def _save_checkpoint_metafile(self, *args, **kwargs):
        """SpeechBrain's ``CKPT.yaml`` writing (main process), after which it broadcasts the
        staging folder's name to the other ranks: a write failure from here on is agreed on."""
        saved = super()._save_checkpoint_metafile(*args, **kwargs)
        self._announced = True
        return saved

    def _publish(self, staged: Checkpoint) -> Checkpoint:
        """Flushes the staging folder, renames it to its final name and flushes ``save/``."""
        final = staged.path.parent / staged.path.name[len(STAGING_PREFIX):]
        _fsync_tree(staged.path)
        if final.exists():  # a named checkpoint saved again
            shutil.rmtree(final)
        os.replace(staged.path, final)
        _fsync(final.parent)
        paramfiles = {key: final / path.name for key, path in staged.paramfiles.items()}
        return staged._replace(path=final, paramfiles=paramfiles)

    def _write_error(self, failure: Optional[BaseException]) -> DataError:
        """Removes this save's staging folder; the error to raise (``failure`` None: another
        rank's write failed)."""
        if if_main_process():
            for folder in self._staging_folders():
                shutil.rmtree(folder, ignore_errors=True)
        reason = "on another process" if failure is None else write_failure_reason(failure, self.checkpoints_dir)
        return DataError(
            f"cannot write a checkpoint ({reason}); the staging folder is removed and the previous "
            "checkpoints are intact: free space or fix the folder, then rerun to resume",
            self.checkpoints_dir,
        )

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
        """SpeechBrain's recovery from the newest loadable checkpoint, interrupted saves removed."""
        if if_main_process():
            self.remove_interrupted_saves()
        ddp_barrier()
        return super().recover_if_possible(*args, **kwargs)

    def find_checkpoint(self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None):
        """SpeechBrain's choice (by default the newest checkpoint) among those whose files pass
        the checks; damaged ones are skipped with a log line.

        Raises
        ------
        DataError
            Checkpoints exist but none can be loaded.
        """
        for checkpoint in self.find_checkpoints(importance_key, max_key, min_key, ckpt_predicate):
            try:
                check_files(checkpoint.paramfiles.values())
            except DamagedCheckpoint as problem:
                self._skip(checkpoint.path, str(problem))
                continue
            return checkpoint
        if self.damaged:
            raise DataError(
                f"no checkpoint here can be loaded ({len(self.damaged)} damaged, each logged): restore "
                "them, or move them out of the folder to train afresh",
                self.checkpoints_dir,
            )
        return None

    def load_checkpoint(self, checkpoint) -> None:
        """SpeechBrain's loading; a failure (files intact, e.g. other model settings) is one error."""
        try:
            super().load_checkpoint(checkpoint)
        except DataError:
            raise
        except Exception as error:  # torch, pickle, YAML or state-dict errors of any recoverable
            detail = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            raise DataError(
                f"cannot load this checkpoint ({detail}): if the run's settings changed since it was "
                "saved, use a new --output_folder; otherwise move it out of the folder to resume from "
                "the previous one",
                checkpoint.path,
            ) from None

    def list_checkpoints(self) -> List[Checkpoint]:
        """The checkpoints whose ``CKPT.yaml`` reads and that hold every required file; the others
        are skipped with a log line."""
        checkpoints = []
        for folder in self._list_checkpoint_dirs():
            try:
                read_metadata(folder)
                checkpoint = self._construct_checkpoint_objects([folder])[0]
                missing = self.missing_files(checkpoint)
                if missing:
                    raise DamagedCheckpoint(f"no {', '.join(missing)}")
            except DamagedCheckpoint as problem:
                self._skip(folder, str(problem))
                continue
            checkpoints.append(checkpoint)
        return checkpoints

    def _skip(self, folder: pathlib.Path, problem: str) -> None:
        """Records a damaged checkpoint; logs it the first time (main process)."""
        if folder not in self.damaged and if_main_process():
            logger.warning(f"Skipping the checkpoint {folder}: {problem} (the folder is kept)")
        self.damaged[folder] = problem

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
