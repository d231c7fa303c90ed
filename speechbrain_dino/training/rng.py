"""Random-number-generator states as a SpeechBrain checkpoint recoverable.

Crops, augmentation and dropout draw from Python's, NumPy's and torch's global generators. Saving
them with the model lets a run killed mid-epoch resume on the same random stream as an
uninterrupted run (SpeechBrain's Checkpointer does not save them by itself).
:func:`decorrelate_ranks` gives DDP ranks distinct streams.
"""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)


@register_checkpoint_hooks
class RandomStates:
    """Saves and restores the global Python, NumPy and torch (CPU and CUDA) generator states."""

    @mark_as_saver
    def save(self, path: str) -> None:
        """Writes the current states to ``path``."""
        states = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(states, path)

    @mark_as_loader
    def load(self, path: str, end_of_epoch: bool = False) -> None:
        """Restores the states saved at ``path``."""
        del end_of_epoch  # the same states are restored whether or not the epoch had ended
        states = torch.load(path, weights_only=False)
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def decorrelate_ranks() -> None:
    """Under DDP, gives every rank its own random stream for crops, augmentation and dropout.

    ``seed_everything`` seeds every rank alike (so that parameters start equal), and a resumed
    run restores rank 0's saved states on every rank: without this, all ranks would draw the
    same crop offsets, noises and reverberations for their different utterances. Every rank
    draws one number from its (shared) torch state and reseeds Python, NumPy and torch with it
    plus its rank, so the streams differ between ranks and are reproducible from the seed or
    the checkpoint. A single process is left untouched (resume stays exact).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    seed = int(torch.randint(0, 2**62, (1,))) + dist.get_rank()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
