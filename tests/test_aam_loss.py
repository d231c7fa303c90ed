"""AAM-softmax with a per-step margin and sub-centres: the max over each speaker's centres, SpeechBrain's
margin arithmetic, and fine-tuning through the recipe."""
import glob
import os
import re
import signal

import pytest
import speechbrain as sb
import torch
from dino_setup import run_recipe
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.data.manifest import read_manifest, write_manifest
from speechbrain_dino.errors import PREEMPTED_EXIT_STATUS, DataError
from speechbrain_dino.inference.export import Architecture, export_pretrained
from speechbrain_dino.synthetic.corpus import generate_corpus
from speechbrain_dino.training import aam_loss
from speechbrain_dino.training.aam_loss import AAMSoftmaxLoss, check_subcenters, max_over_subcenters
from speechbrain_dino.training.run_inputs import INPUTS_FILE
from speechbrain_dino.training.schedules import FineTuneSchedule

DEMO_YAML = os.path.join(HPARAMS_FOLDER, "demo", "train_aam.yaml")
ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
TINY_ECAPA = dict(input_size=40, channels=[32, 32, 32, 32, 96], lin_neurons=32,
                  attention_channels=16, se_channels=16)
TINY_AAM = ["--crop_seconds=1.0", "--batch_size=4", "--noprogressbar",
            "--schedule={frozen_share: 0.25, warmup_share: 0, margin_warmup_share: 0}"]


def classifier_with(rows):
    classifier = Classifier(input_size=2, out_neurons=len(rows))
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor(rows))
    return classifier


def test_class_cosine_is_the_max_over_its_own_centres():
    # 2 speakers x 2 centres, class-major: speaker 0 = (+x, +y), speaker 1 = (-x, -y)
    classifier = classifier_with([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -1.0]])
    embeddings = torch.tensor([[[3.0, 4.0]], [[-4.0, 3.0]]])  # unit vectors (0.6, 0.8), (-0.8, 0.6)
    centre_cosines = classifier(embeddings)
    torch.testing.assert_close(centre_cosines, torch.tensor([[[0.6, 0.8, -0.6, -0.8]],
                                                             [[-0.8, 0.6, 0.8, -0.6]]]))
    class_cosines = max_over_subcenters(centre_cosines, 2)
    assert class_cosines.shape == (2, 1, 2)
    torch.testing.assert_close(class_cosines, torch.tensor([[[0.8, -0.6]], [[0.6, 0.8]]]))


def test_only_the_dominant_centre_of_each_speaker_gets_a_gradient():
    classifier = classifier_with([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -1.0]])
    aam = AAMSoftmaxLoss(scale=30, subcenters=2)
    cosines = aam.class_cosines(classifier(torch.tensor([[[3.0, 4.0]]])))
    # labelled speaker 1 (a loss far from saturation, so both speakers' gradients are large)
    loss = aam(cosines, torch.tensor([[1]]), margin=0.2)
    loss.backward()
    touched = classifier.weight.grad.abs().sum(dim=1) > 0
    # the embedding's nearest centres: (0, 2) for speaker 0, (-3, 0) for speaker 1
    assert touched.tolist() == [False, True, True, False]


@pytest.mark.parametrize("margin", [0.0, 0.07, 0.2])
def test_the_margin_of_each_call_is_speechbrains_aam_at_that_margin(margin):
    torch.manual_seed(0)
    cosines = torch.rand(6, 1, 5) * 2 - 1
    targets = torch.randint(5, (6, 1))
    expected = LogSoftmaxWrapper(AdditiveAngularMargin(margin=margin, scale=30))(cosines, targets)
    loss = AAMSoftmaxLoss(scale=30)
    assert torch.equal(loss(cosines, targets, margin), expected)
    assert not torch.equal(loss(cosines, targets, margin + 0.1), expected)  # the margin is used


def test_fine_tuning_schedule_has_two_phases_and_a_margin_warm_up():
    schedule = FineTuneSchedule.from_epochs(
        epochs=4, steps_per_epoch=10, frozen_share=0.25, warmup_share=0.125, margin_warmup_share=0.5,
        head_lr=0.01, full_lr=0.001, margin=0.2,
    )
    assert (schedule.total_steps, schedule.frozen_steps, schedule.warmup_steps) == (40, 10, 5)
    assert schedule.values(0).backbone_frozen and not schedule.values(10).backbone_frozen
    assert schedule.values(5).lr == pytest.approx(0.01)  # warmed up to the head LR
    assert schedule.values(10).lr == pytest.approx(0.001)  # the second phase starts at the full LR
    assert schedule.values(40).lr == pytest.approx(1e-6)
    assert schedule.values(10).margin == pytest.approx(0.1) and schedule.values(30).margin == pytest.approx(0.2)
    assert FineTuneSchedule.from_epochs(epochs=2, steps_per_epoch=10, frozen_share=2.0).frozen_steps == 20


def test_one_subcenter_is_the_plain_classifier():
    torch.manual_seed(0)
    classifier = Classifier(input_size=8, out_neurons=5)
    centre_cosines = classifier(torch.randn(3, 1, 8))
    assert torch.equal(max_over_subcenters(centre_cosines, 1), centre_cosines)


def test_bad_subcenter_values_are_rejected():
    assert check_subcenters(1) == 1 and check_subcenters(3) == 3
    for value in (0, -2, 2.5, 2.0, "3", True, None):
        with pytest.raises(DataError, match="subcenters must be an integer >= 1"):
            check_subcenters(value)
    with pytest.raises(ValueError, match="not a multiple"):
        max_over_subcenters(torch.zeros(2, 1, 5), 2)


@pytest.fixture
def labelled(tmp_path):
    """4 synthetic speakers x 4 utterances with their labels, and a tiny random ECAPA to start from."""
    rows = generate_corpus(tmp_path / "corpus", speakers=4, utterances=4, emotions=1, seed=0,
                           min_seconds=1.2, max_seconds=1.5)
    write_manifest(rows, tmp_path / "train.csv")
    torch.manual_seed(0)
    architecture = Architecture(ECAPA, TINY_ECAPA, {"n_mels": 40})
    export_pretrained(tmp_path / "init", architecture.build_encoder(), architecture)
    return tmp_path


def run_aam(folder, *extra, output="aam"):
    run_recipe("train_aam", DEMO_YAML, f"--train_csv={folder / 'train.csv'}",
               f"--init_from={folder / 'init'}", f"--output_folder={folder / output}", *TINY_AAM, *extra)


def test_a_fine_tuning_preempted_mid_epoch_resumes_to_the_uninterrupted_weights(labelled, monkeypatch, capsys):
    run_aam(labelled, "--number_of_epochs=2", output="straight")  # 4 steps per epoch
    original, steps = sb.Brain.fit_batch, []

    def sigterm_at_step_6(self, batch):  # a real signal to this process, as a scheduler sends it
        loss = original(self, batch)
        steps.append(1)
        if len(steps) == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(sb.Brain, "fit_batch", sigterm_at_step_6)
    with pytest.raises(SystemExit) as stopped:
        run_aam(labelled, "--number_of_epochs=2")
    assert stopped.value.code == PREEMPTED_EXIT_STATUS
    assert "preempted: SIGTERM during training: stopped after optimiser step 6" in capsys.readouterr().err
    monkeypatch.setattr(sb.Brain, "fit_batch", original)
    run_aam(labelled, "--number_of_epochs=2")
    expected, got = (torch.load(labelled / name / "pretrained" / "embedding_model.ckpt") for name in ("straight", "aam"))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("subcenters", [1, 2])
def test_fine_tuning_learns_and_resumes_only_with_the_same_subcenters(
    labelled, monkeypatch, capsys, subcenters
):
    reductions = []

    def recording(cosines, k):
        class_cosines = max_over_subcenters(cosines, k)
        reductions.append((cosines.shape[-1], k, class_cosines.shape[-1]))
        return class_cosines

    monkeypatch.setattr(aam_loss, "max_over_subcenters", recording)
    rows = 4 * subcenters  # 4 speakers
    run_aam(labelled, f"--subcenters={subcenters}", "--number_of_epochs=8")
    assert set(reductions) == {(rows, subcenters, 4)}  # centre cosines -> 4 speaker cosines
    for checkpoint in glob.glob(str(labelled / "aam" / "save" / "CKPT*")):
        assert torch.load(os.path.join(checkpoint, "classifier.ckpt"))["weight"].shape == (rows, 32)
    log = (labelled / "aam" / "train_log.txt").read_text()
    losses = [float(value) for value in re.findall(r"train loss: ([0-9.e-]+)", log)]
    assert len(losses) == 8 and max(losses[-2:]) < min(losses[:2]) - 1.0, losses
    assert (labelled / "aam" / "pretrained" / "embedding_model.ckpt").is_file()

    reductions.clear()
    run_aam(labelled, f"--subcenters={subcenters}", "--number_of_epochs=9")  # resumes after epoch 8
    assert "epoch: 9" in (labelled / "aam" / "train_log.txt").read_text()
    assert len(reductions) == 4  # one epoch of 16 utterances in batches of 4

    with pytest.raises(SystemExit) as exit_info:
        run_aam(labelled, f"--subcenters={subcenters + 1}", "--number_of_epochs=10")
    assert exit_info.value.code == 2
    message = f"classifier weight is [{rows}, 32] but this run builds [{rows + 4}, 32]"
    assert message in capsys.readouterr().err


def test_bad_subcenters_on_the_command_line_end_in_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_aam(tmp_path, "--subcenters=0")  # rejected before the (absent) data is read
    assert exit_info.value.code == 2
    assert "error: --subcenters=0: expected an integer >= 1" in capsys.readouterr().err


def test_rerun_on_other_labels_in_the_same_folder_is_refused(labelled, capsys):
    run_aam(labelled, "--number_of_epochs=1")
    rows = read_manifest(str(labelled / "train.csv"))
    write_manifest([dict(row, spk_id=f"other{index % 3}") for index, row in enumerate(rows)],
                   labelled / "train.csv")
    with pytest.raises(SystemExit) as exit_info:
        run_aam(labelled, "--number_of_epochs=2")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "was trained with --train_csv=" in error and "use a new --output_folder" in error
    # a folder without the record of its inputs (an older run): the label encoder still refuses
    os.remove(labelled / "aam" / INPUTS_FILE)
    with pytest.raises(SystemExit):
        run_aam(labelled, "--number_of_epochs=2")
    error = capsys.readouterr().err
    assert "label_encoder.txt: holds 4 labels, but train_csv has 3 different ones" in error
    assert "use a new --output_folder" in error
