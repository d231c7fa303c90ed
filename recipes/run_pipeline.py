#!/usr/bin/env python3
"""The whole method in one command.

Runs :mod:`speechbrain_dino.recipes.run_pipeline` (its docstring has the usage), the same as
``python -m speechbrain_dino.recipes.run_pipeline ...``, which works wherever the package is installed.
``hparams/...`` names the project's YAMLs (the repository's ``hparams/``, shipped in the package).
"""
import sys

from speechbrain_dino.recipes.run_pipeline import main

if __name__ == "__main__":
    main(sys.argv[1:])
