"""The regularised DINO family's math against direct computations: Sinkhorn-Knopp balancing,
KoLeo against brute-force nearest neighbours, RDINO's variance-covariance term, SDPN's me-max,
the embedding cosine term, term weights over the run, the EMA horizon, the LR scaling rule, and
the effective-rank monitor."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_dino.training.dino import DINOLoss, sinkhorn_knopp
from speechbrain_dino.training.rank_monitor import EffectiveRankMonitor, effective_rank
from speechbrain_dino.training.regularizers import (
    AuxiliaryTerms,
    ContrastiveTerm,
    EmbeddingCosineTerm,
    KoLeoTerm,
    MeanEntropyTerm,
    SelfDistillationViews,
    VarianceCovarianceTerm,
    koleo,
)
from speechbrain_dino.training.schedules import DINOSchedule, TermWeight, momentum_for_horizon


def make_views(batch=6, student_views=4, teacher_views=2, dim=5, prototypes=7, expander=None, seed=0, sees_global=True):
    generator = torch.Generator().manual_seed(seed)
    return SelfDistillationViews(
        batch_size=batch,
        student_embeddings=torch.randn(student_views * batch, dim, generator=generator),
        student_logits=torch.randn(student_views * batch, prototypes, generator=generator),
        student_expander=None if expander is None else torch.randn(teacher_views * batch, expander, generator=generator),
        teacher_embeddings=torch.randn(teacher_views * batch, dim, generator=generator),
        teacher_logits=torch.randn(teacher_views * batch, prototypes, generator=generator),
        student_sees_global=sees_global,
        teacher_expander=None if expander is None else torch.randn(teacher_views * batch, expander, generator=generator),
    )


def test_sinkhorn_balances_prototypes_and_keeps_rows_distributions():
    probs = F.softmax(torch.randn(64, 16) * 3 + torch.linspace(0, 4, 16), dim=-1)  # skewed columns
    balanced = sinkhorn_knopp(probs, iterations=50)
    torch.testing.assert_close(balanced.sum(dim=1), torch.ones(64))
    torch.testing.assert_close(balanced.sum(dim=0), torch.full((16,), 64 / 16), rtol=1e-3, atol=1e-3)
    few = sinkhorn_knopp(probs, iterations=3)
    torch.testing.assert_close(few.sum(dim=1), torch.ones(64))
    column_spread = lambda q: (q.sum(0) - 4).abs().max()  # noqa: E731
    assert column_spread(few) < 0.5 * column_spread(probs)
    # the result is diag(r) @ probs @ diag(c): the ratio matrix has rank one
    factors = (few / probs).double()
    torch.testing.assert_close(factors * factors[0, 0], factors[:, :1] * factors[:1, :], rtol=1e-6, atol=0.0)


def test_dino_loss_with_sinkhorn_targets_and_student_on_other_crops():
    student, teacher = torch.randn(4 * 3, 5), torch.randn(1 * 3, 5)
    loss_fn = DINOLoss(5, n_global_crops=1, targets="sinkhorn", student_sees_global=False)
    output = loss_fn(student, teacher, 0.025)
    targets = sinkhorn_knopp(F.softmax(teacher / 0.025, dim=-1))
    log_student = F.log_softmax(student / 0.1, dim=-1).view(4, 3, 5)
    expected = -(targets.unsqueeze(0) * log_student).sum(-1).mean()  # every (teacher, student) pair
    torch.testing.assert_close(output.loss, expected)
    with pytest.raises(ValueError, match="targets"):
        DINOLoss(5, targets="other")


def test_koleo_matches_brute_force_nearest_neighbours():
    embeddings = torch.randn(9, 4)
    unit = F.normalize(embeddings, dim=-1)
    expected = []
    for i in range(9):
        distances = [(unit[i] - unit[j]).norm() for j in range(9) if j != i]
        expected.append(-torch.log(min(distances) + 1e-8))
    torch.testing.assert_close(koleo(embeddings), torch.stack(expected).mean())
    views = make_views(batch=5, student_views=3)
    per_view = views.student_embeddings.view(3, 5, -1)
    term = KoLeoTerm(TermWeight(0.1))
    torch.testing.assert_close(term(views), torch.stack([koleo(v) for v in per_view]).sum())


def test_koleo_is_lower_for_spread_than_for_clumped_embeddings():
    clumped = torch.randn(16, 8) * 0.01 + torch.ones(8)
    spread = torch.eye(16, 8) + torch.eye(16, 8).roll(8, 0) * -1
    assert koleo(spread) < koleo(clumped)


def test_variance_covariance_matches_its_formula():
    views = make_views(batch=8, teacher_views=2, expander=6)

    def hinge_and_covariance(expander):
        features = expander.view(2, 8, 6).mean(0)
        centred = features - features.mean(0)
        std = torch.sqrt(centred.var(0) + 1e-4)
        covariance = centred.T @ centred / 7
        off = sum(covariance[i, j] ** 2 for i, j in itertools.product(range(6), range(6)) if i != j)
        return torch.clamp(1 - std, min=0).mean(), off / 6

    (student_hinge, student_cov), (teacher_hinge, teacher_cov) = map(
        hinge_and_covariance, (views.student_expander, views.teacher_expander))
    expected = 10 * (student_hinge + teacher_hinge) / 2 + 1 * (student_cov + teacher_cov)
    torch.testing.assert_close(VarianceCovarianceTerm(TermWeight(0.2))(views), expected)
    with pytest.raises(ValueError, match="expander"):
        VarianceCovarianceTerm(TermWeight(0.2))(make_views())


def test_variance_covariance_is_zero_for_whitened_unit_variance_features():
    batch = 64
    features = torch.randn(batch, 4)
    features = (features - features.mean(0)) / features.std(0)
    whitened = features @ torch.linalg.inv(torch.linalg.cholesky(features.T @ features / (batch - 1))).T
    whitened = whitened * 1.5  # std above 1: the hinge is inactive
    views = make_views(batch=batch, teacher_views=1, expander=4)._replace(
        student_expander=whitened, teacher_expander=whitened.flip(0))
    assert VarianceCovarianceTerm(TermWeight(1.0))(views).item() == pytest.approx(0.0, abs=1e-5)


def test_mean_entropy_is_kl_of_mean_prediction_from_uniform():
    views = make_views(prototypes=7)
    mean = F.softmax(views.student_logits / 0.1, dim=-1).mean(0)
    expected = (mean * mean.log()).sum() + math.log(7)
    torch.testing.assert_close(MeanEntropyTerm(TermWeight(1.0), temperature=0.1)(views), expected)
    uniform = views._replace(student_logits=torch.zeros_like(views.student_logits))
    assert MeanEntropyTerm(TermWeight(1.0))(uniform).item() == pytest.approx(0.0, abs=1e-6)


def test_embedding_cosine_term_skips_same_crop_pairs():
    views = make_views(batch=3, student_views=4, teacher_views=2)
    student = F.normalize(views.student_embeddings, dim=-1).view(4, 3, -1)
    teacher = F.normalize(views.teacher_embeddings, dim=-1).view(2, 3, -1)
    pairs = [(g, v) for g in range(2) for v in range(4) if v != g]
    expected = 1 - torch.stack([(teacher[g] * student[v]).sum(-1).mean() for g, v in pairs]).mean()
    torch.testing.assert_close(EmbeddingCosineTerm(TermWeight(1.0))(views), expected)
    other_crops = views._replace(student_sees_global=False)
    all_pairs = 1 - torch.stack([(teacher[g] * student[v]).sum(-1).mean() for g in range(2) for v in range(4)]).mean()
    torch.testing.assert_close(EmbeddingCosineTerm(TermWeight(1.0))(other_crops), all_pairs)


def test_auxiliary_terms_sum_weighted_values_and_report_each():
    views = make_views(expander=6)
    terms = AuxiliaryTerms({
        "koleo": KoLeoTerm(TermWeight(0.1)),
        "vc": VarianceCovarianceTerm(TermWeight(0.2, start_weight=0.0, warmup_fraction=0.5)),
    })
    total, stats = terms(views, step=25, total_steps=100)  # vc weight halfway up its ramp: 0.1
    expected = 0.1 * terms["koleo"](views) + 0.1 * terms["vc"](views)
    torch.testing.assert_close(total, expected)
    assert stats["vc_weight"].item() == pytest.approx(0.1)
    torch.testing.assert_close(stats["koleo_loss"], terms["koleo"](views))


def test_contrastive_term_trains_its_projector():
    views = make_views(batch=8, student_views=3, dim=6)
    term = ContrastiveTerm(TermWeight(1.0, decay_fraction=0.5), embedding_dim=6, projection_size=4, hidden_size=8)
    term(views).backward()
    assert all(parameter.grad is not None for parameter in term.projector.parameters())


def test_term_weight_ramp_and_decay():
    ramp = TermWeight(0.2, start_weight=0.05, warmup_fraction=10 / 70)
    assert ramp.value(0, 700) == pytest.approx(0.05)
    assert ramp.value(50, 700) == pytest.approx(0.125)
    assert ramp.value(100, 700) == pytest.approx(0.2) and ramp.value(700, 700) == pytest.approx(0.2)
    decay = TermWeight(1.0, decay_fraction=0.5)
    assert [decay.value(step, 100) for step in (0, 25, 50, 90)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError):
        TermWeight(1.0, warmup_fraction=0.6, decay_fraction=0.5)


def test_momentum_horizon_is_relative_to_the_run():
    assert momentum_for_horizon(250) == pytest.approx(0.996)  # the paper's constant
    schedule = DINOSchedule.from_epochs(epochs=10, steps_per_epoch=40, teacher_momentum_horizon_epochs=0.5)
    assert schedule.teacher_momentum == pytest.approx(1 - 1 / 20)
    # the initial teacher keeps weight m^h ~ e^-1 after one horizon of constant momentum
    assert momentum_for_horizon(20) ** 20 == pytest.approx(math.exp(-1), rel=0.05)
    with pytest.raises(ValueError):
        momentum_for_horizon(0.5)


def test_learning_rate_scaling_rule():
    schedule = DINOSchedule.from_epochs(epochs=1, steps_per_epoch=10, warmup_epochs=0, lr_per_256=0.005, global_batch_size=96)
    assert schedule.base_lr == pytest.approx(0.005 * 96 / 256)
    with pytest.raises(ValueError, match="global batch"):
        DINOSchedule.from_epochs(epochs=1, steps_per_epoch=10, lr_per_256=0.005)


def test_effective_rank_of_known_matrices():
    torch.manual_seed(0)
    full = torch.randn(4096, 8)
    low = torch.randn(4096, 2) @ torch.randn(2, 8)
    assert effective_rank(full)["rankme"] > 7.5 and effective_rank(full)["dims_99"] == 8
    assert effective_rank(low)["rankme"] < 2.5 and effective_rank(low)["dims_99"] <= 2
    monitor = EffectiveRankMonitor(capacity=100)
    for _ in range(5):
        monitor.add(torch.randn(40, 1, 8))
    assert monitor.buffer.shape == (100, 8)
    monitor.start_epoch()
    assert monitor.summary() == {}
