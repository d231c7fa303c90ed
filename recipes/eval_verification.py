#!/usr/bin/env python3
"""Speaker verification of an encoder folder.

Runs :mod:`speechbrain_dino.recipes.eval_verification` (its docstring has the usage), the same as
``python -m speechbrain_dino.recipes.eval_verification ...``, which works wherever the package is installed.
``hparams/...`` names the project's YAMLs (the repository's ``hparams/``, shipped in the package).
"""
import sys

from speechbrain_dino.recipes.eval_verification import main

if __name__ == "__main__":
    main(sys.argv[1:])
