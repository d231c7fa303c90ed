"""Every recipe checks its overrides before any work: one error line naming the key, exit 2."""
import glob
import importlib
import os
import subprocess
import sys

import pytest
import ruamel.yaml

from speechbrain_dino.config import recipe_settings
from speechbrain_dino.config.settings import Nested, Setting, check_run_options, check_settings
from speechbrain_dino.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: (recipe, hparams, bad override, the key the error must name)
BAD_OVERRIDES = [
    ("train_dino", "hparams/demo/dino_ecapa.yaml", "--batch_size=abc", "--batch_size=abc"),
    ("train_dino", "hparams/demo/dino_ecapa.yaml", "--batch_size=0", "--batch_size=0"),
    ("train_dino", "hparams/demo/dino_ecapa.yaml", "--batch_size=-3", "--batch_size=-3"),
    ("train_dino", "hparams/demo/dino_ecapa.yaml", "--number_of_epochs=2.5", "--number_of_epochs"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--crops={n_global: 0}", "--crops.n_global=0"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--crops={local_seconds: 0}", "--crops.local_seconds"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--schedule={teacher_momentum: 1.5}", "--schedule.teacher_momentum"),
    ("train_dino", "hparams/demo/contrastive_ecapa.yaml", "--schedule={base_lr: abc}", "--schedule.base_lr"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--resample=maybe", "--resample=maybe"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--device=cuda:99", "--device=cuda:99"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--device=tpu", "--device=tpu"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--device=cpu --precision=fp16", "--precision=fp16"),
    ("train_dino", "hparams/demo/sdpn_ecapa.yaml", "--teacher_augmentation=noisy", "--teacher_augmentation=noisy"),
    ("train_dino", "hparams/demo/rdino_ecapa.yaml", "--koleo_weight=-0.1", "--koleo_weight=-0.1"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--contrastive_decay_fraction=1.5", "--contrastive_decay_fraction=1.5"),
    ("train_dino", "hparams/dino_ecapa.yaml", "--dino_loss={targets: kmeans}", "--dino_loss.targets=kmeans"),
    ("train_dino", "hparams/demo/dino_ecapa.yaml", "--crops={window_factor: 0.5}", "--crops.window_factor=0.5"),
    ("train_aam", "hparams/train_aam.yaml", "--device=cpu --precision=bf16", "--precision=bf16"),
    ("train_aam", "hparams/train_aam.yaml", "--batch_size=abc", "--batch_size=abc"),
    ("train_aam", "hparams/demo/train_aam.yaml", "--subcenters=0", "--subcenters=0"),
    ("train_aam", "hparams/train_aam.yaml", "--schedule={margin: 2}", "--schedule.margin=2"),
    ("pseudo_label", "hparams/pseudo_label.yaml", "--max_seconds=-1", "--max_seconds=-1"),
    ("pseudo_label", "hparams/pseudo_label.yaml", "--max_batch_seconds=0", "--max_batch_seconds=0"),
    ("pseudo_label", "hparams/pseudo_label.yaml", "--clustering={min_size: abc}", "--clustering.min_size"),
    ("pseudo_label", "hparams/pseudo_label.yaml", "--clustering={ahc_threshold: 1.5}", "--clustering.ahc_threshold"),
    ("eval_verification", "hparams/verification.yaml", "--max_batch_seconds=abc", "--max_batch_seconds=abc"),
    ("eval_verification", "hparams/verification.yaml", "--as_norm_top_n=abc", "--as_norm_top_n=abc"),
    ("eval_verification", "hparams/verification.yaml", "--chunk_seconds=0", "--chunk_seconds=0"),
    ("eval_verification", "hparams/verification.yaml", "--num_workers=-1", "--num_workers=-1"),
    ("eval_emotion", "hparams/emotion.yaml", "--folds=abc", "--folds=abc"),
    ("eval_emotion", "hparams/emotion.yaml", "--folds=1", "--folds=1"),
    ("eval_emotion", "hparams/emotion.yaml", "--inner_folds=1", "--inner_folds=1"),
    ("eval_emotion", "hparams/emotion.yaml", "--classifier=svm", "--classifier=svm"),
    ("run_pipeline", "hparams/demo/pipeline.yaml", "--rounds=abc", "--rounds=abc"),
    ("run_pipeline", "hparams/demo/pipeline.yaml", "--pretraining_overrides={batch_size: 0}", "--pretraining_overrides.batch_size"),
    ("run_pipeline", "hparams/pipeline.yaml", "--emotion_overrides={folds: x}", "--emotion_overrides.folds"),
    ("run_pipeline", "hparams/pipeline.yaml", "--aam_overrides=7", "--aam_overrides=7"),
    ("run_pipeline", "hparams/demo/pipeline.yaml", "--run_options=[--precision=fp16]", "--precision=fp16"),
]


@pytest.mark.parametrize("recipe, hparams, override, key", BAD_OVERRIDES)
def test_a_bad_override_is_one_line_and_exit_2(recipe, hparams, override, key, capsys, tmp_path):
    main = importlib.import_module(f"speechbrain_dino.recipes.{recipe}").main
    with pytest.raises(SystemExit) as exited:
        main([hparams, f"--output_folder={tmp_path / 'out'}", *override.split(" ")])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}") and "expected" in lines[0], lines
    assert not (tmp_path / "out").exists()  # refused before any work


def test_a_bad_override_in_a_fresh_process_prints_exactly_one_line(tmp_path):
    command = [sys.executable, "-m", "speechbrain_dino.recipes.train_dino", "hparams/dino_ecapa.yaml",
               f"--output_folder={tmp_path}", "--crops={n_global: 0}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --crops.n_global=0: expected an integer >= 1"


@pytest.mark.parametrize(
    "setting, good, bad, words",
    [
        (Setting(int, low=1), [1, 7], [0, 1.5, True, "3", None], "an integer >= 1"),
        (Setting(float, low=0, open_low=True, nullable=True), [None, 2, 0.5], [0, -1, "x", float("nan")],
         "null or a number > 0"),
        (Setting(float, low=0, high=1, open_high=True), [0, 0.99], [1, 1.0, -0.1], "a number >= 0 and < 1"),
        (Setting(bool), [True, False], [1, "yes", None], "True or False"),
        (Setting(str, choices=("a", "b")), ["a"], ["c", 1], "one of a, b"),
        (Setting(int, low=1, choices=("auto",)), [1, "auto"], ["abc", 0, 1.5, None], "auto or an integer >= 1"),
    ],
)
def test_setting_accepts_its_values_and_says_which(setting, good, bad, words):
    assert all(setting.accepts(value) for value in good)
    assert not any(setting.accepts(value) for value in bad)
    assert setting.describe() == words


def test_nested_overrides_are_checked_against_their_recipes_table():
    table = {"stage_overrides": Nested({"crops.n": Setting(int, low=1)})}
    check_settings({"stage_overrides": {"crops": {"n": 2}}, "other": "x"}, table)
    with pytest.raises(DataError, match=r"^--stage_overrides.crops.n=0: expected an integer >= 1$"):
        check_settings({"stage_overrides": {"crops": {"n": 0}}}, table)


def test_run_options_accept_the_cpu_in_full_precision():
    check_run_options({"device": "cpu", "precision": "fp32"})
    check_run_options({})
    with pytest.raises(DataError, match="--eval_precision=fp8: expected fp32, fp16 or bf16"):
        check_run_options({"eval_precision": "fp8"})


def test_an_override_given_twice_is_one_line(capsys, tmp_path):
    main = importlib.import_module("speechbrain_dino.recipes.train_dino").main
    with pytest.raises(SystemExit) as exited:
        main(["hparams/dino_ecapa.yaml", f"--output_folder={tmp_path}", "--batch_size=4", "--batch_size=8"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: the overrides are not valid YAML: found duplicate key")


def _table_of(hparams):
    """The settings table of the recipe that runs a shipped YAML or preset."""
    name = os.path.basename(hparams)
    tables = {"pipeline.yaml": recipe_settings.RUN_PIPELINE, "pseudo_label.yaml": recipe_settings.PSEUDO_LABEL,
              "train_aam.yaml": recipe_settings.TRAIN_AAM, "verification.yaml": recipe_settings.EVAL_VERIFICATION,
              "emotion.yaml": recipe_settings.EVAL_EMOTION}
    return tables.get(name, recipe_settings.TRAIN_DINO)


def _untagged(tree):
    """A YAML tree's values with ``!new:`` mappings as plain ones (tagged scalars stay skipped)."""
    if isinstance(tree, dict):
        return {key: _untagged(value) for key, value in tree.items()}
    return tree


@pytest.mark.parametrize("hparams", sorted(glob.glob(os.path.join(REPO, "hparams", "**", "*.yaml"), recursive=True)))
def test_every_shipped_yaml_passes_its_table(hparams):
    with open(hparams, encoding="utf-8") as fin:
        check_settings(_untagged(ruamel.yaml.YAML().load(fin)), _table_of(hparams))


def test_the_new_knobs_take_null_and_auto_where_their_yamls_do():
    check_settings({"schedule": {"base_lr": None, "lr_per_256": None}, "crops": {"window_factor": None},
                    "contrastive_decay_fraction": None, "teacher_augmentation": "mild"}, recipe_settings.TRAIN_DINO)
    check_settings({"clustering": {"ahc_threshold": "auto", "min_size": "auto"}}, recipe_settings.PSEUDO_LABEL)
    check_settings({"clustering": {"ahc_threshold": 0.8, "min_size": 8}}, recipe_settings.PSEUDO_LABEL)
    check_settings({"verbose": True, "pseudo_label_overrides": {"clustering": {"min_size": "auto"}}},
                   recipe_settings.RUN_PIPELINE)
