"""DINO head, loss, centre, teacher EMA, weight-decay groups, schedules, collapse diagnosis."""
from __future__ import annotations

import copy
import math
from typing import List

import pytest
import torch
from torch import nn

from speechbrain_dino.training.dino import DINOHead, DINOLoss, diagnose_collapse
from speechbrain_dino.training.ema import ema_update_
from speechbrain_dino.training.parameters import APPLY_WEIGHT_DECAY, param_groups_for_weight_decay
from speechbrain_dino.training.schedules import DINOSchedule, cosine_schedule, linear_warmup


def softmax(values: List[float], temperature: float) -> List[float]:
    """Plain-python softmax of ``values / temperature``."""
    exps = [math.exp(value / temperature) for value in values]
    return [value / sum(exps) for value in exps]


def test_dino_loss_matches_hand_computation():
    student = [[1.0, 0.0, -1.0], [0.5, 0.2, 0.1], [-0.3, 0.4, 0.0]]  # 2 global + 1 local view, B = 1
    teacher = [[0.2, 0.1, -0.1], [0.0, 0.3, 0.1]]
    center = [0.1, -0.1, 0.0]
    teacher_temperature = 0.05
    loss_fn = DINOLoss(n_prototypes=3, n_global_crops=2, student_temperature=0.1)
    loss_fn.center.copy_(torch.tensor([center]))

    teacher_probs = [softmax([t - c for t, c in zip(row, center)], teacher_temperature) for row in teacher]
    student_probs = [softmax(row, 0.1) for row in student]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = sum(
        -sum(q * math.log(p) for q, p in zip(teacher_probs[g], student_probs[v])) for g, v in pairs
    ) / len(pairs)

    output = loss_fn(torch.tensor(student), torch.tensor(teacher), teacher_temperature)
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)


def test_same_crop_pairs_are_excluded():
    """Student view 0 (= global crop 0) is only compared with teacher view 1."""
    torch.manual_seed(0)
    batch, n_views, n_prototypes, n_pairs = 2, 4, 5, 2 * 4 - 2
    student = torch.randn(n_views * batch, n_prototypes, requires_grad=True)
    teacher = torch.randn(2 * batch, n_prototypes)
    DINOLoss(n_prototypes, student_temperature=0.1)(student, teacher, 0.04).loss.backward()

    student_probs = torch.softmax(student.detach()[:batch] / 0.1, dim=-1)
    teacher_view1_probs = torch.softmax(teacher[batch:] / 0.04, dim=-1)
    expected_grad = (student_probs - teacher_view1_probs) / (0.1 * n_pairs * batch)
    torch.testing.assert_close(student.grad[:batch], expected_grad)


def test_loss_rejects_inconsistent_view_counts():
    loss_fn = DINOLoss(4)
    with pytest.raises(ValueError, match="student_logits"):
        loss_fn(torch.zeros(5, 4), torch.zeros(4, 4), 0.04)
    with pytest.raises(ValueError, match="teacher_logits"):
        loss_fn(torch.zeros(6, 4), torch.zeros(3, 4), 0.04)


def test_center_is_exact_ema_of_batch_means_and_checkpointed():
    loss_fn = DINOLoss(n_prototypes=2, center_momentum=0.9)
    first = torch.tensor([[1.0, 3.0], [3.0, 5.0]])  # mean [2, 4]
    second = torch.tensor([[10.0, 0.0], [30.0, 20.0]])  # mean [20, 10]
    loss_fn.update_center(first)
    loss_fn.update_center(second)
    expected = 0.9 * (0.1 * torch.tensor([2.0, 4.0])) + 0.1 * torch.tensor([20.0, 10.0])
    torch.testing.assert_close(loss_fn.center, expected[None])
    assert torch.equal(loss_fn.state_dict()["center"], loss_fn.center)


def test_statistics_of_uniform_teacher():
    n_prototypes = 8
    output = DINOLoss(n_prototypes)(torch.randn(6, n_prototypes), torch.zeros(4, n_prototypes), 0.04)
    assert output.stats["teacher_entropy"].item() == pytest.approx(math.log(n_prototypes), rel=1e-5)
    assert output.stats["teacher_kl_uniform"].item() == pytest.approx(0.0, abs=1e-5)
    assert output.stats["teacher_max_share"].item() == pytest.approx(1 / n_prototypes)
    assert 0 < output.stats["student_entropy"].item() < math.log(n_prototypes)


def collapse_message(teacher_logits: torch.Tensor):
    """``diagnose_collapse`` on the stats of a 2-global-view batch with the given teacher logits."""
    n_prototypes = teacher_logits.shape[1]
    student_logits = torch.randn(2 * teacher_logits.shape[0], n_prototypes)
    stats = DINOLoss(n_prototypes)(student_logits, teacher_logits, 0.04).stats
    return diagnose_collapse(stats, n_prototypes)


def test_collapse_diagnosis():
    n_prototypes, batch = 16, 16
    uniform = torch.zeros(2 * batch, n_prototypes)
    assert "uniform" in collapse_message(uniform)

    one_prototype = torch.zeros(2 * batch, n_prototypes)
    one_prototype[:, 3] = 1.0
    assert "few prototypes" in collapse_message(one_prototype)

    distinct_peaks = torch.eye(n_prototypes).repeat(2, 1)  # each utterance peaks on its own prototype
    assert collapse_message(distinct_peaks) is None


def test_head_shapes_and_unit_norm_prototypes():
    head = DINOHead(input_size=6, hidden_size=16, bottleneck_size=4, n_prototypes=10)
    assert head(torch.randn(3, 1, 6)).logits.shape == (3, 10)
    assert head(torch.randn(3, 6)).logits.shape == (3, 10)
    with pytest.raises(ValueError):
        head(torch.randn(3, 2, 6))
    magnitude = head.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(10))
    free_magnitude = DINOHead(6, 16, 4, 10, norm_last_layer=False).last_layer.parametrizations.weight.original0
    assert free_magnitude.requires_grad


def test_head_copy_and_state_dict_round_trip():
    head = DINOHead(6, 16, 4, 10, n_layers=2, use_bn=True).eval()
    teacher = copy.deepcopy(head)
    other = DINOHead(6, 16, 4, 10, n_layers=2, use_bn=True).eval()
    other.load_state_dict(head.state_dict())
    inputs = torch.randn(5, 6)
    torch.testing.assert_close(teacher(inputs), head(inputs))
    torch.testing.assert_close(other(inputs), head(inputs))


def test_cancelled_last_layer_is_not_updated():
    torch.manual_seed(0)
    head = DINOHead(4, 8, 4, 6, n_layers=2, norm_last_layer=False)
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.1, weight_decay=0.1)
    last_before = [p.detach().clone() for p in head.last_layer.parameters()]
    mlp_before = [p.detach().clone() for p in head.mlp.parameters()]
    head(torch.randn(5, 4)).logits.pow(2).sum().backward()
    head.cancel_last_layer_gradients()
    assert all(p.grad is None for p in head.last_layer.parameters())
    optimizer.step()
    assert all(torch.equal(p, before) for p, before in zip(head.last_layer.parameters(), last_before))
    assert any(not torch.equal(p, before) for p, before in zip(head.mlp.parameters(), mlp_before))


def test_reference_parity_teacher_ema_on_parameters_only():
    """DINO's EMA loop zips the parameters alone: the teacher's running statistics are its own."""
    student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for teacher_param, student_param in zip(teacher.parameters(), student.parameters()):
            teacher_param.fill_(1.0)
            student_param.fill_(3.0)
    teacher[1].running_mean.fill_(0.0)
    student[1].running_mean.fill_(2.0)
    student[1].running_var.fill_(3.0)
    student[1].num_batches_tracked.fill_(7)
    student_before = copy.deepcopy(student.state_dict())

    ema_update_(teacher, nn.DataParallel(student), momentum=0.9)  # a wrapped student is unwrapped

    for teacher_param in teacher.parameters():
        torch.testing.assert_close(teacher_param, torch.full_like(teacher_param, 1.2))
    torch.testing.assert_close(teacher[1].running_mean, torch.zeros(2))
    torch.testing.assert_close(teacher[1].running_var, torch.ones(2))
    assert teacher[1].num_batches_tracked.item() == 0
    for name, value in student.state_dict().items():
        assert torch.equal(value, student_before[name])


def test_teacher_ema_rejects_different_architectures():
    with pytest.raises(ValueError, match="differ"):
        ema_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)), momentum=0.9)


def test_weight_decay_groups_skip_biases_norms_and_frozen():
    frozen = nn.Linear(3, 3).requires_grad_(False)
    head = DINOHead(3, 8, 4, 5, n_layers=2, norm_last_layer=False)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), frozen, head)
    groups = param_groups_for_weight_decay([model, model], weight_decay=0.05)
    decayed = {id(p) for g in groups if g[APPLY_WEIGHT_DECAY] for p in g["params"]}
    undecayed = {id(p) for g in groups if not g[APPLY_WEIGHT_DECAY] for p in g["params"]}
    weight_norm = head.last_layer.parametrizations.weight
    decayed_expected = (model[0].weight, head.mlp[0].weight, head.mlp[2].weight, weight_norm.original1)
    undecayed_expected = (
        model[0].bias, model[1].weight, model[1].bias, head.mlp[0].bias, head.mlp[2].bias, weight_norm.original0
    )
    assert decayed == {id(p) for p in decayed_expected}
    assert undecayed == {id(p) for p in undecayed_expected}
    assert sum(len(g["params"]) for g in groups) == len(decayed) + len(undecayed)


def test_cosine_schedule_endpoints_and_warmup():
    assert cosine_schedule(0, 1.0, 0.0, 100) == pytest.approx(1.0)
    assert cosine_schedule(50, 1.0, 0.0, 100) == pytest.approx(0.5)
    assert cosine_schedule(100, 1.0, 0.0, 100) == pytest.approx(0.0)
    assert cosine_schedule(500, 1.0, 0.0, 100) == pytest.approx(0.0)
    assert cosine_schedule(0, 1.0, 0.0, 100, warmup_steps=10) == pytest.approx(0.0)
    assert cosine_schedule(5, 1.0, 0.0, 100, warmup_steps=10, warmup_start_value=0.2) == pytest.approx(0.6)
    assert cosine_schedule(10, 1.0, 0.0, 100, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_schedule(55, 1.0, 0.0, 100, warmup_steps=10) == pytest.approx(0.5)


def test_linear_warmup():
    assert linear_warmup(0, 0.04, 0.07, 10) == pytest.approx(0.04)
    assert linear_warmup(5, 0.04, 0.07, 10) == pytest.approx(0.055)
    assert linear_warmup(10, 0.04, 0.07, 10) == pytest.approx(0.07)
    assert linear_warmup(99, 0.04, 0.07, 10) == pytest.approx(0.07)
    assert linear_warmup(3, 0.04, 0.07, 0) == pytest.approx(0.07)


def test_dino_schedule_values_and_apply():
    schedule = DINOSchedule.from_epochs(
        epochs=10, steps_per_epoch=10, warmup_epochs=2, freeze_last_layer_epochs=1, base_lr=0.01
    )
    assert (schedule.total_steps, schedule.warmup_steps, schedule.freeze_last_layer_steps) == (100, 20, 10)
    start, end = schedule.values(0), schedule.values(100)
    assert (start.lr, start.teacher_momentum, start.teacher_temperature) == pytest.approx((0.0, 0.996, 0.04))
    assert start.freeze_last_layer and not schedule.values(10).freeze_last_layer
    assert schedule.values(20).lr == pytest.approx(0.01)
    assert (end.lr, end.teacher_momentum, end.weight_decay) == pytest.approx((1e-6, 1.0, 1e-4))

    model = nn.Linear(3, 2)
    plain = nn.Linear(2, 2)
    unmarked_group = {"params": plain.parameters()}
    optimizer = torch.optim.AdamW(param_groups_for_weight_decay(model, 0.5) + [unmarked_group])
    values = schedule.apply(optimizer, 50)
    assert [group["lr"] for group in optimizer.param_groups] == [values.lr] * 3
    assert [group["weight_decay"] for group in optimizer.param_groups] == [1e-4, 0.0, 1e-4]


@pytest.fixture
def one_thread():
    """Tiny tensors on busy shared cores run far faster on one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_toy_dino_training_lowers_loss_without_collapse(one_thread):
    """Eight Gaussian clusters, a tiny student with an EMA teacher: the loss falls, the teacher
    separates the clusters and no collapse is reported."""
    torch.manual_seed(0)
    n_prototypes, batch, n_clusters, steps = 64, 64, 8, 80
    centers = torch.randn(n_clusters, 8) * 3
    student = nn.Sequential(
        nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 16),
        DINOHead(16, hidden_size=32, bottleneck_size=8, n_prototypes=n_prototypes, n_layers=2),
    )
    teacher = copy.deepcopy(student).requires_grad_(False)
    loss_fn = DINOLoss(n_prototypes)
    schedule = DINOSchedule(
        total_steps=steps, base_lr=0.01, final_lr=1e-3, warmup_steps=5, teacher_momentum=0.99,
        freeze_last_layer_steps=5,
    )
    optimizer = torch.optim.AdamW(param_groups_for_weight_decay(student, 1e-4))
    losses = []
    for step in range(steps):
        values = schedule.apply(optimizer, step)
        utterances = centers[torch.arange(batch) % n_clusters] + 0.5 * torch.randn(batch, 8)
        global_crops = torch.cat([utterances + 0.3 * torch.randn(batch, 8) for _ in range(2)])
        local_crops = torch.cat([utterances + 0.6 * torch.randn(batch, 8) for _ in range(2)])
        with torch.no_grad():
            teacher_logits = teacher(global_crops).logits
        student_logits = student(torch.cat([global_crops, local_crops])).logits
        output = loss_fn(student_logits, teacher_logits, values.teacher_temperature)
        optimizer.zero_grad()
        output.loss.backward()
        if values.freeze_last_layer:
            student[-1].cancel_last_layer_gradients()
        optimizer.step()
        ema_update_(teacher, student, values.teacher_momentum)
        loss_fn.update_center(teacher_logits)
        losses.append(output.loss.item())

    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:5]) / 5
    assert diagnose_collapse(output.stats, n_prototypes) is None
    with torch.no_grad():
        assert len(set(teacher(centers).logits.argmax(dim=1).tolist())) >= n_clusters // 2
