"""Random-number-generator states as a SpeechBrain checkpoint recoverable, one per DDP rank.

Crops, augmentation and dropout draw from Python's, NumPy's and torch's global generators. Saving
them with the model lets a run killed mid-epoch resume on the same random stream as an
uninterrupted run (SpeechBrain's Checkpointer does not save them by itself). Under DDP every rank
has its own stream (:func:`decorrelate_ranks`, at the start of a run); the saver gathers all of
them, so that each rank of a resumed run continues its own, and the resumed run ends with the
weights of an uninterrupted one.
"""
from __future__ import annotations

import functools
import random
from typing import Any, Dict

import numpy as np
import torch
import torch.distributed as dist
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import if_main_process

from speechbrain_dino.training.ranks import world_size


def current_states() -> Dict[str, Any]:
    """This process's Python, NumPy and torch (CPU and CUDA) generator states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_states(states: Dict[str, Any]) -> None:
    """Sets this process's generators to ``states`` (as :func:`current_states` gives them)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@functools.partial(register_checkpoint_hooks, save_on_main_only=False)
class RandomStates:
    """Saves and restores every rank's generator states (``{rank: states}`` in one file)."""

    @mark_as_saver
    def save(self, path: str) -> None:
        """Gathers every rank's states (the saver runs on all ranks); the main process writes them."""
        states = [current_states()]
        if world_size() > 1:
            states = [None] * world_size()
            dist.all_gather_object(states, current_states())
        if if_main_process():
            torch.save(dict(enumerate(states)), path)

    @mark_as_loader
    def load(self, path: str, end_of_epoch: bool = False) -> None:
        """Restores this rank's states; a rank the file has none for (a run resumed on more
        processes) keeps the stream :func:`decorrelate_ranks` gave it."""
        del end_of_epoch  # the same states are restored whether or not the epoch had ended
        saved = torch.load(path, weights_only=False)
        if "torch" in saved:  # written before per-rank states: the main process's only
            saved = {0: saved}
        rank = dist.get_rank() if world_size() > 1 else 0
        if rank in saved:
            restore_states(saved[rank])


def decorrelate_ranks() -> None:
    """Under DDP, gives every rank its own random stream for crops, augmentation and dropout.

    ``seed_everything`` seeds every rank alike (so that parameters start equal): without this,
    all ranks would draw the same crop offsets, noises and reverberations for their different
    utterances. Every rank draws one number from its (shared) torch state and reseeds Python,
    NumPy and torch with it plus its rank, so the streams differ between ranks and are
    reproducible from the seed. Call it before recovery, which then restores each rank's saved
    stream. A single process is left untouched.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    seed = int(torch.randint(0, 2**62, (1,))) + dist.get_rank()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
