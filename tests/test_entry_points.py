"""The command lines the README promises start (modules, console-script targets, recipe scripts)."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*command, cwd=None):
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("module", ["speechbrain_dino.prepare", "speechbrain_dino.verification.make_trials",
                                    "speechbrain_dino.synthetic"])
def test_module_command_lines_show_their_usage(module):
    result = run("-m", module, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")


def test_recipe_scripts_and_modules_reject_a_missing_hparams_file_in_one_line(tmp_path):
    for command in (["-m", "speechbrain_dino.recipes.eval_emotion"], [os.path.join(REPO, "recipes", "train_aam.py")]):
        result = run(*command, "hparams/none.yaml", cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith("error: hparams/none.yaml: hparams file not found")
