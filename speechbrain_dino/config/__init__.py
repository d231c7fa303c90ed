"""Configuration: finding and loading hparams files with clear errors, the checked settings of each
recipe, ``--help``, and the writer of the small ``hparams/demo/`` experiments."""
