"""The recipes, one module per stage: ``python -m speechbrain_dino.recipes.<name> <hparams> ...``.

``train_dino`` (DINO or the contrastive baseline), ``pseudo_label``, ``train_aam``,
``eval_verification``, ``eval_emotion``, and ``run_pipeline`` (all of them, chained). Each parses
SpeechBrain arguments, loads its YAML (see :func:`speechbrain_dino.config.loading.load_recipe`),
prepares data, builds and fits, and exports or writes its results; the repository's ``recipes/``
scripts call them.
"""
