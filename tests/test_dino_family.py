"""The regularised DINO family through the recipe: each preset trains with its terms active, a
killed SDPN run resumes to the same weights, and a warm start copies a pretrained encoder."""
import os
import re

import pytest
import torch
from dino_setup import TINY_OVERRIDES, run_recipe, tone_corpus

from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.export import load_encoder_weights, load_pretrained_encoder
from speechbrain_dino.training.brains.ssl import SelfDistillationBrain

TINY_HEAD = "--student_head={hidden_size: 64, bottleneck_size: 32, expander_size: 48}"


def train(preset, train_csv, output_folder, *extra):
    replaced = tuple(option.split("=")[0] + "=" for option in extra)
    tiny = [o for o in TINY_OVERRIDES if not o.startswith(("--student_head",) + replaced)]
    head = TINY_HEAD if preset == "rdino" else "--student_head={hidden_size: 64, bottleneck_size: 32}"
    run_recipe("train_dino", os.path.join(HPARAMS_FOLDER, "demo", f"{preset}_ecapa.yaml"),
               f"--train_csv={train_csv}", f"--output_folder={output_folder}", *tiny, head, *extra)
    return (output_folder / "train_log.txt").read_text().splitlines()


def logged(line, name):
    match = re.search(rf"train {name}: ([-0-9.e+]+)", line)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("preset, terms", [
    ("rdino", ["variance_covariance"]),
    ("sdpn", ["koleo", "mean_entropy"]),
    ("dino_cosine", ["embedding_cosine"]),
])
def test_each_family_preset_trains_with_its_terms(tmp_path, preset, terms):
    train_csv = tone_corpus(str(tmp_path / "data"), count=8)
    log = train(preset, train_csv, tmp_path / preset, "--number_of_epochs=3")
    assert len(log) == 3
    for line in log:
        assert all(logged(line, f"{term}_loss") is not None for term in terms), line
        assert logged(line, "rankme") is not None and logged(line, "dims_99") is not None
        assert torch.isfinite(torch.tensor(logged(line, "loss")))
    weights = [logged(line, f"{terms[0]}_weight") for line in log]
    if preset == "rdino":  # ramped 0.05 -> 0.2 over the first 14% of the run, then constant
        assert weights[-1] == pytest.approx(0.2) and weights[0] < 0.2
    if preset == "dino_cosine":  # ramped from 0 over the first 20% of the run
        assert weights[0] < weights[-1] == pytest.approx(0.1)
    assert (tmp_path / preset / "pretrained" / "embedding_model.ckpt").is_file()


class Killed(Exception):
    """Stands for the process being killed mid-epoch."""


def test_killed_sdpn_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)  # 3 steps per epoch
    straight_log = train("sdpn", train_csv, tmp_path / "straight", "--number_of_epochs=2")
    original = SelfDistillationBrain.on_fit_batch_end
    steps = {"done": 0}

    def kill_after_four_steps(self, *args, **kwargs):
        original(self, *args, **kwargs)
        steps["done"] += 1
        if steps["done"] == 5:
            raise Killed()

    monkeypatch.setattr(SelfDistillationBrain, "on_fit_batch_end", kill_after_four_steps)
    with pytest.raises(Killed):
        train("sdpn", train_csv, tmp_path / "killed", "--number_of_epochs=2", "--ckpt_interval_steps=1")
    monkeypatch.setattr(SelfDistillationBrain, "on_fit_batch_end", original)
    resumed_log = train("sdpn", train_csv, tmp_path / "killed", "--number_of_epochs=2", "--ckpt_interval_steps=1")
    straight, resumed = (torch.load(tmp_path / name / "pretrained" / "embedding_model.ckpt")
                         for name in ("straight", "killed"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    assert resumed_log[-1] == straight_log[-1]  # the term losses and the effective rank included


def test_warm_start_copies_a_pretrained_encoder_and_refuses_another_architecture(tmp_path):
    train_csv = tone_corpus(str(tmp_path / "data"), count=8)
    train("dino", train_csv, tmp_path / "source", "--number_of_epochs=1")
    source, architecture = load_pretrained_encoder(tmp_path / "source" / "pretrained")
    fresh = architecture.build_encoder()
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), source.state_dict().values()))
    load_encoder_weights(fresh, tmp_path / "source" / "pretrained")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)
    other = torch.nn.Linear(3, 3)
    with pytest.raises(DataError, match="another architecture"):
        load_encoder_weights(other, tmp_path / "source" / "pretrained")
    # a run started from it: the first epoch's teacher (an EMA that starts at the student) stays close
    log = train("dino", train_csv, tmp_path / "warm", "--number_of_epochs=1",
                f"--init_from={tmp_path / 'source' / 'pretrained'}", "--schedule={warmup_epochs: 0.5, base_lr: 0.0, lr_per_256: null}")
    warm = torch.load(tmp_path / "warm" / "pretrained" / "embedding_model.ckpt")
    for key, value in source.state_dict().items():
        if value.is_floating_point() and "running" not in key and "num_batches" not in key:
            torch.testing.assert_close(warm[key], value, rtol=0, atol=1e-6, msg=key)
    assert log
