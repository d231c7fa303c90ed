"""NT-Xent contrastive baseline, projection head, and the one-rank distributed paths."""
from __future__ import annotations

import math
from typing import List

import pytest
import torch
import torch.distributed as dist

from speechbrain_dino.training.contrastive import NTXentLoss, ProjectionHead
from speechbrain_dino.training.dino import DINOLoss


def reference_ntxent(rows: List[List[float]], n_views: int, temperature: float) -> float:
    """Plain-python multi-positive NT-Xent over view-major rows."""
    batch = len(rows) // n_views
    unit = [[value / math.sqrt(sum(v * v for v in row)) for value in row] for row in rows]
    total = 0.0
    for anchor in range(len(rows)):
        similarity = [sum(a * b for a, b in zip(unit[anchor], row)) / temperature for row in unit]
        denominator = sum(math.exp(similarity[other]) for other in range(len(rows)) if other != anchor)
        positives = [other for other in range(len(rows)) if other != anchor and (other - anchor) % batch == 0]
        total -= sum(math.log(math.exp(similarity[p]) / denominator) for p in positives) / len(positives)
    return total / len(rows)


def test_two_view_loss_matches_hand_computation():
    rows = [[2.0, 0.0], [0.0, 3.0], [0.6, 0.8], [0.8, 0.6]]  # view 0: utterances 0, 1; view 1: 0, 1
    # unit rows' cosines / 0.5: s01 = 0, s02 = 1.2, s03 = 1.6, s12 = 1.6, s13 = 1.2, s23 = 1.92;
    # every anchor's positive (0-2, 1-3) has 1.2; denominators sum over the three other rows
    e = math.exp
    denominators = [
        e(0) + e(1.2) + e(1.6), e(0) + e(1.6) + e(1.2), e(1.2) + e(1.6) + e(1.92), e(1.6) + e(1.2) + e(1.92)
    ]
    expected = sum(-math.log(e(1.2) / denominator) for denominator in denominators) / 4
    loss = NTXentLoss(temperature=0.5)(torch.tensor(rows), n_views=2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert reference_ntxent(rows, 2, 0.5) == pytest.approx(expected)


def test_multi_positive_loss_matches_reference():
    torch.manual_seed(0)
    projections = torch.randn(3 * 4, 5)
    loss = NTXentLoss(temperature=0.2)(projections, n_views=3)
    assert loss.item() == pytest.approx(reference_ntxent(projections.tolist(), 3, 0.2), rel=1e-5)


def test_agreeing_views_give_lower_loss_than_shuffled():
    torch.manual_seed(0)
    utterances = torch.randn(8, 16)
    views = torch.cat([utterances + 0.1 * torch.randn(8, 16), utterances + 0.1 * torch.randn(8, 16)])
    shuffled = torch.cat([views[:8], views[8:][torch.roll(torch.arange(8), 1)]])
    loss_fn = NTXentLoss()
    assert loss_fn(views, n_views=2) < loss_fn(shuffled, n_views=2) - 1.0


def test_gradient_flows_through_projection_head():
    torch.manual_seed(0)
    head = ProjectionHead(input_size=6, hidden_size=12, projection_size=4)
    embeddings = torch.randn(2 * 5, 1, 6, requires_grad=True)
    projections = head(embeddings)
    assert projections.shape == (10, 4)
    NTXentLoss()(projections, n_views=2).backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_rejects_bad_view_count():
    with pytest.raises(ValueError):
        NTXentLoss()(torch.randn(6, 3), n_views=4)
    with pytest.raises(ValueError):
        NTXentLoss()(torch.randn(6, 3), n_views=1)


def test_one_rank_process_group_paths_match_local(tmp_path):
    """With a one-process gloo group, the all-gather and all-reduce paths give the local results."""
    torch.manual_seed(0)
    projections = torch.randn(2 * 4, 5)
    teacher_logits = torch.randn(6, 3)
    local_loss = NTXentLoss(gather_distributed=True)(projections, n_views=2)
    local_center = DINOLoss(3)
    local_center.update_center(teacher_logits)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        gathered_loss = NTXentLoss(gather_distributed=True)(projections, n_views=2)
        reduced_center = DINOLoss(3)
        reduced_center.update_center(teacher_logits)
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(gathered_loss, local_loss)
    torch.testing.assert_close(reduced_center.center, local_center.center)
