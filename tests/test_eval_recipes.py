"""Evaluation recipes end to end on fabricated corpora in their real layouts."""
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import write_tone

from speechbrain_dino.inference.export import Architecture, export_pretrained
from speechbrain_dino.prepare.voxceleb import prepare_voxceleb

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
SMALL_ECAPA = dict(
    input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=32,
    attention_channels=16, se_channels=16, res2net_scale=4,
)


def run(recipe, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", recipe), *args],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )


@pytest.fixture
def encoder_folder(tmp_path):
    torch.manual_seed(0)
    architecture = Architecture(ECAPA, SMALL_ECAPA, {"n_mels": 40})
    return export_pretrained(tmp_path / "enc" / "pretrained", architecture.build_encoder().eval(), architecture)


@pytest.fixture
def mini_voxceleb1(tmp_path):
    """wav/idXXXXX/VIDEO/NNNNN.wav for 3 speakers and a veri_test2.txt-format trial list."""
    root = tmp_path / "vox1"
    paths = []
    for speaker in ("id10270", "id10271", "id10272"):
        for video in ("5r0dWxy17C8", "zjwijMp0Qyw"):
            for utt in ("00001", "00002"):
                rel = f"{speaker}/{video}/{utt}.wav"
                write_tone(str(root / "wav" / rel), seconds=1.0, seed=len(paths))
                paths.append(rel)
    lines = []
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            lines.append(f"{int(first[:7] == second[:7])} {first} {second}")
    (root / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    return root


def test_voxceleb1_tree_and_official_trials_run_end_to_end(tmp_path, encoder_folder, mini_voxceleb1):
    test_csv = tmp_path / "vox1_test.csv"
    report = prepare_voxceleb(mini_voxceleb1, test_csv)
    assert report["utterances"] == 12 and report["speakers"] == 3
    # the manifest names its audio relative to $data_root, which the recipe's --data_root replaces
    test_csv.write_text(test_csv.read_text().replace(str(mini_voxceleb1), "$data_root"))
    out = tmp_path / "eval"
    result = run(
        "eval_verification.py", "hparams/verification.yaml", f"--pretrained_path={encoder_folder}",
        f"--test_csv={test_csv}", f"--trials={mini_voxceleb1 / 'veri_test2.txt'}", f"--data_root={mini_voxceleb1}",
        f"--cohort_csv={test_csv}", f"--output_folder={out}", "--as_norm_top_n=2", "--baselines=[]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["n_trials"] == 66 and results["n_target"] == 18
    assert 0.0 <= results["EER"] <= 100.0 and "minDCF_0.01" in results and "minDCF_0.05" in results
    assert results["as_norm"]["n_trials"] == 66
    for metrics in (results, results["as_norm"]):  # the manifest's spk_id gives a speaker-bootstrap interval
        low, high = metrics["EER_interval_95"]
        assert low <= metrics["EER"] <= high and high > low
    assert (out / "det.png").stat().st_size > 10_000
    scores = (out / "scores_encoder_raw.txt").read_text().splitlines()
    assert len(scores) == 66 and scores[0].split()[1] == "id10270--5r0dWxy17C8--00001"
    assert "verification | encoder | 66 trials" in result.stdout


def test_unknown_trial_ids_and_bad_overrides_give_one_line_errors(tmp_path, encoder_folder, mini_voxceleb1):
    test_csv = tmp_path / "vox1_test.csv"
    prepare_voxceleb(mini_voxceleb1, test_csv)
    trials = tmp_path / "bad_trials.txt"
    trials.write_text("1 id10270/5r0dWxy17C8/00001.wav id99999/nope/00001.wav\n")
    common = [f"--pretrained_path={encoder_folder}", f"--test_csv={test_csv}", f"--output_folder={tmp_path / 'o'}"]
    result = run("eval_verification.py", "hparams/verification.yaml", *common, f"--trials={trials}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "bad_trials.txt" in result.stderr and "line 1" in result.stderr and "Traceback" not in result.stderr

    result = run("eval_verification.py", "hparams/verification.yaml", *common, f"--trials={trials}", "--no_such_key=3")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no_such_key" in result.stderr

    result = run("eval_verification.py", "hparams/verification.yaml", f"--test_csv={test_csv}", f"--trials={trials}",
                 f"--output_folder={tmp_path / 'o2'}")
    assert result.returncode == 2 and "pretrained_path" in result.stderr and "Traceback" not in result.stderr
