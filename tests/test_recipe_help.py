"""Every recipe answers --help: usage, its YAML's top-level keys (values and comments) and
SpeechBrain's run options, exit 0."""
import importlib
import os
import subprocess
import sys

import pytest

from speechbrain_dino.config.help import top_level_settings
from speechbrain_dino.config.loading import _read_yaml, find_hparams

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: recipe -> (its default YAML, a key of it, another YAML it runs with)
RECIPES = {
    "train_dino": ("hparams/dino_ecapa.yaml", "n_prototypes", "hparams/contrastive_ecapa.yaml"),
    "train_aam": ("hparams/train_aam.yaml", "subcenters", "hparams/demo/train_aam.yaml"),
    "pseudo_label": ("hparams/pseudo_label.yaml", "clustering", "hparams/demo/pseudo_label.yaml"),
    "eval_verification": ("hparams/verification.yaml", "as_norm_top_n", "hparams/verification.yaml"),
    "eval_emotion": ("hparams/emotion.yaml", "classifier", "hparams/emotion.yaml"),
    "run_pipeline": ("hparams/demo/pipeline.yaml", "rounds", "hparams/pipeline.yaml"),
}


def recipe_help(capsys, recipe, *argv):
    main = importlib.import_module(f"speechbrain_dino.recipes.{recipe}").main
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_help_without_a_yaml_shows_the_default_yamls_keys_and_the_run_options(recipe, capsys):
    default, key, _ = RECIPES[recipe]
    text = recipe_help(capsys, recipe, "--help")
    assert text.startswith("usage: ")
    assert f"Settings of {default}" in text
    assert f"\n  {key}:" in text
    assert "SpeechBrain run options:" in text and "--device DEVICE" in text and "--precision" in text


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_help_after_a_yaml_shows_that_yamls_keys(recipe, capsys):
    _, _, other = RECIPES[recipe]
    text = recipe_help(capsys, recipe, other, "--output_folder=x", "-h")
    assert f"Settings of {other}" in text
    for setting in top_level_settings(_read_yaml(find_hparams(other))):
        assert f"\n  {setting.key}:" in text


def test_a_small_experiment_shows_its_values_and_the_paper_scale_ones_in_the_comments(capsys):
    text = recipe_help(capsys, "train_dino", "hparams/demo/dino_ecapa.yaml", "--help")
    lines = {line.split(":", 1)[0].strip(): line for line in text.splitlines() if line.startswith("  ")}
    assert "1024" in lines["n_prototypes"] and "paper scale: 65536" in lines["n_prototypes"]
    assert "!new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN" in lines["student"]  # the tag as written
    assert "# the same architecture" in lines["teacher"]  # the comment beside the value
    assert "(required: --train_csv=...)" in lines["train_csv"]


def test_the_recipe_script_answers_help_with_exit_zero(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "train_aam.py"), "--help"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: train_aam.py") and "Settings of hparams/train_aam.yaml" in result.stdout
