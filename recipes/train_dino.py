#!/usr/bin/env python3
"""Self-supervised pretraining with DINO (or the contrastive baseline).

Runs :mod:`speechbrain_dino.recipes.train_dino` (its docstring has the usage), the same as
``python -m speechbrain_dino.recipes.train_dino ...``, which works wherever the package is installed.
``hparams/...`` names the project's YAMLs (the repository's ``hparams/``, shipped in the package).
"""
import sys

from speechbrain_dino.recipes.train_dino import main

if __name__ == "__main__":
    main(sys.argv[1:])
