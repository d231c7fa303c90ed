"""Random-number-generator states as a SpeechBrain checkpoint recoverable.

Crops, augmentation and dropout draw from Python's, NumPy's and torch's global generators. Saving
them with the model lets a run killed mid-epoch resume on the same random stream as an
uninterrupted run (SpeechBrain's Checkpointer does not save them by itself).
"""
from __future__ import annotations

import random

import numpy as np
import torch
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
