#!/usr/bin/env python3
"""The whole method in one command: pretraining -> rounds of (pseudo-labels -> AAM) -> evaluations.

    python recipes/run_pipeline.py hparams/demo/pipeline.yaml --output_folder=results/demo
    python -m speechbrain_dino.recipes.run_pipeline hparams/pipeline.yaml --output_folder=exp/vox \
        --train_csv=vox2_dev.csv --test_csv=vox1_test.csv --trials=veri_test2.txt --cohort_csv=...

With the demo YAML it first generates the synthetic corpus and splits it by speaker: training
speakers for pretraining and pseudo-labelling (labels never used), held-out speakers for the
verification trials and the emotion folds. The run holds ``<output_folder>/run.lock`` (one run per
folder). Each stage runs in its own subfolder (see
:mod:`speechbrain_dino.pipeline.run`); rerunning skips finished stages and resumes an interrupted one.
The terminal shows one line per stage as it starts and ends (its wall time and key number, the
elapsed time and an estimate of what remains); each stage's full output goes to
``stage_output.log`` in its folder, and ``--verbose`` streams it to the terminal too. Prints where
the outputs are and the results table at the end, and writes it to ``results.md`` / ``results.json``.
"""
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main

from speechbrain_dino.config.exits import clean_exit
from speechbrain_dino.config.loading import load_recipe
from speechbrain_dino.config.recipe_settings import RUN_PIPELINE, RUN_PIPELINE_KEYS, RUN_PIPELINE_RENAMED
from speechbrain_dino.config.settings import check_stage_run_options
from speechbrain_dino.pipeline.console import experiment_log_config
from speechbrain_dino.pipeline.run import Pipeline, prepare_synthetic_data
from speechbrain_dino.training.run_lock import output_folder_lock

#: The flag that streams every stage's output (the YAML's ``verbose``; a bare flag means true).
VERBOSE_FLAG = "--verbose"


@clean_exit
def main(argv):
    """Prepares the data (demo), runs every stage, prints where the outputs are and the table."""
    argv = [f"{VERBOSE_FLAG}=True" if arg == VERBOSE_FLAG else arg for arg in argv]
    hparams_file, run_opts, overrides, hparams = load_recipe(
        argv, usage=__doc__, default_hparams="hparams/demo/pipeline.yaml", settings=RUN_PIPELINE,
        reads=RUN_PIPELINE_KEYS, renamed=RUN_PIPELINE_RENAMED,
    )
    check_stage_run_options(hparams.get("run_options") or [])
    with output_folder_lock(hparams["output_folder"]):
        with experiment_log_config(quiet=not hparams.get("verbose")) as log_config:
            sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file,
                                           overrides=overrides, log_config=log_config)
        if hparams.get("synthetic"):
            run_on_main(
                prepare_synthetic_data,
                args=[hparams["output_folder"], hparams["synthetic"], hparams["heldout_speakers"], hparams["seed"],
                      hparams["trials_cross"]],
            )
        pipeline = Pipeline(hparams)
        table = pipeline.run()
        print("\n" + "\n".join(pipeline.locations()) + "\n")
        print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
