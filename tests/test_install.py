"""A non-editable install (a wheel) carries the recipes and hparams: a stage runs from another folder.

The wheel is installed with ``--no-deps`` into a fresh virtual environment that sees this
environment's packages (torch, SpeechBrain...) through a ``.pth`` line, but not the editable
install of the repository, and the stage runs with neither the repository on the path nor as the
working directory.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

from dino_setup import TINY_OVERRIDES, tone_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_FOLDERS = ("site-packages", "dist-packages")

STAGE = """
import json, sys
import speechbrain_dino
from speechbrain_dino.pipeline.stages import StageRunner
stages = StageRunner(run_options=json.loads(sys.argv[3]))
pretrained = stages.train_dino("hparams/demo/dino_ecapa.yaml", sys.argv[1], sys.argv[2])
print(json.dumps({"package": speechbrain_dino.__file__, "pretrained": pretrained}))
"""


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    return result.stdout


def test_a_wheel_install_runs_a_pipeline_stage_outside_the_repository(tmp_path):
    source = tmp_path / "source"  # a copy, so that building leaves the repository untouched
    for folder in ("speechbrain_dino", "hparams"):
        shutil.copytree(os.path.join(REPO, folder), source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
         str(source)], cwd=tmp_path)
    (wheel,) = wheels.glob("speechbrain_dino-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    with open(os.path.join(purelib, "project_environment.pth"), "w", encoding="utf-8") as fout:
        # this environment's packages as dependencies (their own .pth files do not run: no editable install)
        fout.write("\n".join(path for path in sys.path if os.path.basename(path) in PACKAGE_FOLDERS) + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", str(wheel)])

    elsewhere = tmp_path / "elsewhere"
    train_csv = tone_corpus(str(elsewhere / "data"), count=8)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    options = [*TINY_OVERRIDES, "--number_of_epochs=1"]
    output = run([python, "-c", textwrap.dedent(STAGE), train_csv, "dino", json.dumps(options)],
                 cwd=elsewhere, env=env)
    result = json.loads(output.strip().splitlines()[-1])
    assert result["package"].startswith(purelib)  # the installed copy, not the repository
    assert os.path.isfile(os.path.join(elsewhere, "dino", "pretrained", "embedding_model.ckpt"))
    assert result["pretrained"] == os.path.join("dino", "pretrained")
