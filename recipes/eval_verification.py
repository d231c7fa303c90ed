#!/usr/bin/env python3
"""Speaker verification of an encoder folder.

Runs :mod:`speechbrain_dino.recipes.eval_verification` (its docstring has the usage), the same as
``python -m speechbrain_dino.recipes.eval_verification ...``, which works wherever the package is installed.
``hparams/...`` names the YAMLs shipped in ``speechbrain_dino/hparams/``.
"""
import sys

from speechbrain_dino.recipes.eval_verification import main

if __name__ == "__main__":
    main(sys.argv[1:])
