#!/usr/bin/env python3
"""Pseudo speaker labels for an unlabelled corpus.

Runs :mod:`speechbrain_dino.recipes.pseudo_label` (its docstring has the usage), the same as
``python -m speechbrain_dino.recipes.pseudo_label ...``, which works wherever the package is installed.
``hparams/...`` names the project's YAMLs (the repository's ``hparams/``, shipped in the package).
"""
import sys

from speechbrain_dino.recipes.pseudo_label import main

if __name__ == "__main__":
    main(sys.argv[1:])
