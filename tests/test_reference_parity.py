"""Parity with the reference implementations, each expected value computed here from the
reference code's formula: facebookresearch/dino (``utils.clip_gradients``, its order against
``cancel_gradients_last_layer``), 3D-Speaker (``KoLeoLoss`` summed per local crop in
``train_sdpn.py``, ``RegLoss`` in ``loss/dino_loss.py``, the SDPN prototypes) and the reported EER
(the speaker bootstrap's point value on tied scores)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dino_setup import TINY_OVERRIDES, run_recipe, tone_corpus
from torch import nn

from speechbrain_dino.config.loading import HPARAMS_FOLDER, load_hparams
from speechbrain_dino.training.brains import base as brain_base
from speechbrain_dino.training.brains.ssl import SelfDistillationBrain
from speechbrain_dino.training.clipping import clip_gradients_
from speechbrain_dino.training.dino import DINOHead
from speechbrain_dino.training.parameters import APPLY_WEIGHT_DECAY, param_groups_for_weight_decay
from speechbrain_dino.training.regularizers import KoLeoTerm, SelfDistillationViews, VarianceCovarianceTerm
from speechbrain_dino.training.schedules import TermWeight
from speechbrain_dino.verification.bootstrap import SpeakerBootstrap, TrialSpeakers, weighted_eers
from speechbrain_dino.verification.metrics import equal_error_rate, error_counts, verification_metrics


def reference_clip_gradients(parameters, clip):
    """facebookresearch/dino ``utils.clip_gradients`` (3D-Speaker's ``utils_rdino`` is the same)."""
    for parameter in parameters:
        if parameter.grad is not None:
            norm = parameter.grad.norm(2)
            coefficient = clip / (norm + 1e-6)
            if coefficient < 1:
                parameter.grad.mul_(coefficient)


def parameters_with_gradients(seed):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 3, 2), (11,), (4, 6)]
    parameters = [nn.Parameter(torch.zeros(shape)) for shape in shapes]
    for index, parameter in enumerate(parameters):
        parameter.grad = torch.randn(parameter.shape, generator=generator) * (0.1 + index)
    return parameters


def test_reference_parity_per_tensor_clipping_matches_dino_clip_gradients():
    ours, reference = parameters_with_gradients(0), parameters_with_gradients(0)
    before = [parameter.grad.clone() for parameter in ours]
    norms = clip_gradients_(ours, 3.0, "per_tensor")
    reference_clip_gradients(reference, 3.0)
    assert (norms > 3.0).any() and (norms <= 3.0).any()  # both cases occur
    for ours_parameter, reference_parameter, original, norm in zip(ours, reference, before, norms):
        torch.testing.assert_close(ours_parameter.grad, reference_parameter.grad, rtol=1e-6, atol=0)
        if norm <= 3.0:
            assert torch.equal(ours_parameter.grad, original)  # bitwise untouched
        else:
            assert ours_parameter.grad.norm().item() == pytest.approx(3.0, rel=1e-5)


def test_parity_global_clipping_is_torch_clip_grad_norm():
    ours, reference = parameters_with_gradients(1), parameters_with_gradients(1)
    total = clip_gradients_(ours, 3.0, "global")
    expected_total = nn.utils.clip_grad_norm_(reference, 3.0)
    torch.testing.assert_close(total[0], expected_total)
    for ours_parameter, reference_parameter in zip(ours, reference):
        torch.testing.assert_close(ours_parameter.grad, reference_parameter.grad)
    with pytest.raises(ValueError, match="gradient_clipping"):
        clip_gradients_(ours, 3.0, "layerwise")


def test_reference_parity_clipping_before_the_last_layer_cancel_in_one_demo_epoch(tmp_path, monkeypatch):
    """One epoch of the demo DINO preset (tiny overrides) with --max_grad_norm=1.0: at every
    optimiser step each gradient under the clip is untouched, each above it is scaled to the clip,
    and the frozen last layer's gradients are clipped first and cancelled after (as DINO does)."""
    steps = []
    original_clip, original_hook = brain_base.clip_gradients_, SelfDistillationBrain.before_optimizer_step

    def recording_clip(parameters, max_norm, mode="per_tensor"):
        parameters = list(parameters)
        before = {id(p): p.grad.clone() for p in parameters if p.grad is not None}
        norms = original_clip(parameters, max_norm, mode)
        after = {id(p): p.grad.clone() for p in parameters if p.grad is not None}
        steps.append({"max_norm": max_norm, "mode": mode, "before": before, "after": after})
        return norms

    def recording_hook(self):
        last_layer = list(self.modules.student_head.last_layer.parameters())
        steps[-1]["last_layer"] = [id(p) for p in last_layer if p.requires_grad]
        original_hook(self)
        steps[-1]["cancelled"] = all(p.grad is None for p in last_layer)

    monkeypatch.setattr(brain_base, "clip_gradients_", recording_clip)
    monkeypatch.setattr(SelfDistillationBrain, "before_optimizer_step", recording_hook)
    train_csv = tone_corpus(str(tmp_path / "data"), count=12)
    run_recipe("train_dino", os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml"), f"--train_csv={train_csv}",
               f"--output_folder={tmp_path / 'out'}", *TINY_OVERRIDES, "--number_of_epochs=1", "--max_grad_norm=1.0")
    assert len(steps) == 3  # 12 utterances, batch 4
    clipped = untouched = 0
    for step in steps:
        assert step["max_norm"] == 1.0 and step["mode"] == "per_tensor"
        for key, gradient in step["before"].items():
            norm = gradient.norm().item()
            if norm <= 1.0:
                assert torch.equal(step["after"][key], gradient)
                untouched += 1
            else:
                assert step["after"][key].norm().item() == pytest.approx(1.0, rel=1e-5)
                clipped += 1
        assert step["last_layer"] and set(step["last_layer"]) <= set(step["before"])  # clipped first
        assert step["cancelled"]  # then cancelled (frozen during the first epoch)
    assert clipped and untouched


def reference_koleo(student_output, eps=1e-8):
    """3D-Speaker ``KoLeoLoss.forward`` (nearest neighbour by inner product, PairwiseDistance)."""
    student_output = F.normalize(student_output, eps=eps, p=2, dim=-1)
    dots = student_output @ student_output.t()
    dots.view(-1)[:: student_output.shape[0] + 1].fill_(-1)
    nearest = dots.max(dim=1).indices
    distances = nn.PairwiseDistance(2, eps=1e-8)(student_output, student_output[nearest])
    return -torch.log(distances + eps).mean()


def test_reference_parity_koleo_is_summed_over_the_local_crops_as_sdpn():
    batch, views, dim = 12, 4, 16
    embeddings = torch.randn(views * batch, dim)
    selfdistillation = SelfDistillationViews(
        batch_size=batch, student_embeddings=embeddings, student_logits=torch.randn(views * batch, 8),
        student_expander=None, teacher_embeddings=torch.randn(batch, dim), teacher_logits=torch.randn(batch, 8),
        student_sees_global=False)
    expected = sum(reference_koleo(chunk) for chunk in embeddings.chunk(4))  # train_sdpn.py
    torch.testing.assert_close(KoLeoTerm(TermWeight(0.1))(selfdistillation), expected, rtol=1e-5, atol=1e-5)


def reference_reg_loss(teacher_expander, student_expander, std_coeff, cov_coeff, global_crops=2):
    """3D-Speaker ``RegLoss.forward`` in one process (FullGatherLayer is the identity there)."""
    dim = teacher_expander.shape[1]
    x = student_expander.reshape(global_crops, -1, dim).mean(0)
    y = teacher_expander.reshape(global_crops, -1, dim).mean(0)
    x, y = x - x.mean(0), y - y.mean(0)
    std_x, std_y = torch.sqrt(x.var(0) + 0.0001), torch.sqrt(y.var(0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    batch = x.shape[0]
    cov_x, cov_y = x.T @ x / (batch - 1), y.T @ y / (batch - 1)

    def off_diagonal(matrix):
        n = matrix.shape[0]
        return matrix.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()

    cov_loss = off_diagonal(cov_x).pow(2).sum() / dim + off_diagonal(cov_y).pow(2).sum() / dim
    return std_coeff * std_loss + cov_coeff * cov_loss


def test_reference_parity_rdino_regulariser_halves_student_and_teacher_hinges():
    batch, dim = 16, 6
    teacher = torch.randn(2 * batch, dim) * 0.5  # std below 1: the hinges are active
    student = (torch.randn(2 * batch, dim) * 0.5).requires_grad_(True)
    reference_student = student.detach().clone().requires_grad_(True)
    views = SelfDistillationViews(
        batch_size=batch, student_embeddings=torch.randn(4 * batch, 3), student_logits=torch.randn(4 * batch, 5),
        student_expander=student, teacher_embeddings=torch.randn(2 * batch, 3), teacher_logits=torch.randn(2 * batch, 5),
        student_sees_global=True, teacher_expander=teacher)
    ours = VarianceCovarianceTerm(TermWeight(0.2), std_coeff=10.0, cov_coeff=1.0)(views)
    expected = reference_reg_loss(teacher, reference_student, 10.0, 1.0)
    torch.testing.assert_close(ours, expected)
    ours.backward()
    expected.backward()
    torch.testing.assert_close(student.grad, reference_student.grad)


def test_reference_parity_fixed_prototypes_are_untouched_by_the_optimiser():
    torch.manual_seed(0)
    for mode in ("fixed", "learnable"):
        head = DINOHead(8, hidden_size=16, bottleneck_size=4, n_prototypes=10, prototypes=mode)
        prototypes = head.last_layer.parametrizations.weight.original1.detach().clone()
        hidden = head.mlp[0].weight.detach().clone()
        optimizer = torch.optim.AdamW(param_groups_for_weight_decay(head, 1e-4), lr=0.01)
        for _ in range(3):
            optimizer.zero_grad()
            head(torch.randn(6, 8)).logits.logsumexp(-1).mean().backward()
            optimizer.step()
        moved = not torch.equal(head.last_layer.parametrizations.weight.original1, prototypes)
        assert moved == (mode == "learnable")
        assert not torch.equal(head.mlp[0].weight, hidden)


def test_reference_parity_sdpn_prototypes_train_without_weight_decay_from_the_first_step(tmp_path):
    """3D-Speaker's sv-sdpn adds its prototypes to the optimiser with weight_decay 0 and nothing
    freezes them (no parameter of its student is named last_layer)."""
    head = DINOHead(8, hidden_size=16, bottleneck_size=4, n_prototypes=10, prototype_weight_decay=False)
    groups = param_groups_for_weight_decay(head, 1e-4)
    prototype = head.last_layer.parametrizations.weight.original1
    decayed = [p for group in groups if group[APPLY_WEIGHT_DECAY] for p in group["params"]]
    assert all(p is not prototype for p in decayed) and any(p is head.mlp[0].weight for p in decayed)
    for preset in ("sdpn_ecapa.yaml", os.path.join("demo", "sdpn_ecapa.yaml")):
        hparams = load_hparams(os.path.join(HPARAMS_FOLDER, preset), {"output_folder": str(tmp_path), "train_csv": "x"})[2]
        assert hparams["schedule"]["freeze_last_layer_epochs"] == 0
        assert hparams["student_head"].prototype_weight_decay is False


def test_parity_bootstrap_point_eer_is_the_reported_eer_on_tied_scores():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        count = int(rng.integers(4, 12))
        labels = rng.integers(0, 2, size=count)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 4, size=count) / 3.0  # many ties
        speakers = rng.integers(0, 3, size=(count, 2)).astype(str)
        sides = TrialSpeakers.from_speakers(speakers[:, 0], speakers[:, 1])
        point, _ = SpeakerBootstrap(labels, sides, draws=1).eers(scores)
        assert point == verification_metrics(scores, labels)["EER"]
        unit = weighted_eers(scores, labels, np.ones((1, count)))[0]
        assert unit == equal_error_rate(error_counts(scores, labels))[0]
        repeats = rng.integers(1, 4, size=count)
        repeated = equal_error_rate(error_counts(np.repeat(scores, repeats), np.repeat(labels, repeats)))[0]
        assert weighted_eers(scores, labels, repeats[None, :].astype(float))[0] == pytest.approx(repeated, abs=1e-12)
