#!/usr/bin/env python3
"""Emotion recognition from frozen embeddings.

Runs :mod:`speechbrain_dino.recipes.eval_emotion` (its docstring has the usage), the same as
``python -m speechbrain_dino.recipes.eval_emotion ...``, which works wherever the package is installed.
``hparams/...`` names the project's YAMLs (the repository's ``hparams/``, shipped in the package).
"""
import sys

from speechbrain_dino.recipes.eval_emotion import main

if __name__ == "__main__":
    main(sys.argv[1:])
