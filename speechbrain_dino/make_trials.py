"""``python -m speechbrain_dino.make_trials``: the trial-list command line of
:mod:`speechbrain_dino.verification.make_trials` (also installed as ``sbdino-make-trials``)."""
import sys

from speechbrain_dino.verification.make_trials import main

if __name__ == "__main__":
    sys.exit(main())
