"""The benchmark studies on real speech, and the speed and scale measurements.

Run every script as a module from the repository root, e.g.::

    python -m bench.run_all --help
    python -m bench.significance --study_folder bench/work/objectives_20min --reference contrastive

Scripts (each one study or measurement): run_all, objectives, rounds_study, finetune_study,
significance, clustering_study, cluster_scale, dino_speed, extraction_speed, scoring_speed,
prepare_shared, long_horizon, fidelity_study, clipping_check, inference_study.

Shared modules: ``common`` (paths, machine line, results files, BENCHMARKS.md blocks), ``study``
(systems, the study's stages and evaluation, the pipeline's rounds), ``systems`` (the label-free
systems of the objectives study), ``budget`` (minutes to epochs), ``study_data`` (the
speaker-disjoint sets) and ``study_figures``. The real data is read from ``$SBDINO_SHARED_DATA``
(default ``../shared/data``); results go to ``bench/results/``, work folders to ``bench/work/``.
"""
