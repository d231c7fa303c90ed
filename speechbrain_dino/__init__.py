"""speechbrain-dino: self-supervised utterance-level speech embeddings (DINO) on SpeechBrain."""
from typing import Any

from speechbrain_dino.errors import DataError

__all__ = ["DataError", "SpeakerVerifier"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``speechbrain_dino.SpeakerVerifier``, imported on first use (it imports SpeechBrain's
    inference classes, which the command-line tools that never need it should not wait for)."""
    if name == "SpeakerVerifier":
        from speechbrain_dino.inference.verifier import SpeakerVerifier

        return SpeakerVerifier
    raise AttributeError(f"module 'speechbrain_dino' has no attribute {name!r}")
