"""speechbrain-dino: self-supervised utterance-level speech embeddings (DINO) on SpeechBrain."""
from speechbrain_dino.errors import DataError

__all__ = ["DataError"]
__version__ = "0.1.0"
