#!/usr/bin/env python3
"""AAM-softmax fine-tuning on (pseudo-)speaker labels.

Runs :mod:`speechbrain_dino.recipes.train_aam` (its docstring has the usage), the same as
``python -m speechbrain_dino.recipes.train_aam ...``, which works wherever the package is installed.
``hparams/...`` names the project's YAMLs (the repository's ``hparams/``, shipped in the package).
"""
import sys

from speechbrain_dino.recipes.train_aam import main

if __name__ == "__main__":
    main(sys.argv[1:])
