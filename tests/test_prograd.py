"""ProGrad: the projected gradient against a hand computation, and the loop stepping along it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kmat.engine import train
from kmat.methods import get_method
from kmat.methods.prograd import ProGrad, general_loss, prograd_direction
from kmat.run.config import RunConfig
from kmat.run.runner import build_method


def test_conflicting_gradients_are_projected_as_computed_by_hand():
    g_d = torch.tensor([1.0, 0.0, 2.0])
    g_g = torch.tensor([-1.0, 1.0, 0.0])  # G_d . G_g = -1, ||G_g||^2 = 2
    g, conflict = prograd_direction(g_d, g_g)
    # G = G_d - 1 * (-1 / 2) * G_g = [1, 0, 2] + 0.5 * [-1, 1, 0]
    assert conflict and torch.allclose(g, torch.tensor([0.5, 0.5, 2.0]))
    assert float(torch.dot(g, g_g)) == pytest.approx(0.0, abs=1e-7)  # lambda = 1: orthogonal to G_g
    g_half, _ = prograd_direction(g_d, g_g, lam=0.5)
    assert torch.allclose(g_half, torch.tensor([0.75, 0.25, 2.0]))
    g_zero, conflict = prograd_direction(g_d, g_g, lam=0.0)
    assert conflict and torch.equal(g_zero, g_d)


def test_agreeing_orthogonal_or_zero_general_gradients_leave_the_domain_gradient_unchanged():
    g_d = torch.tensor([1.0, 2.0, -1.0])
    for g_g in (torch.tensor([1.0, 0.0, 0.5]), torch.tensor([2.0, -1.0, 0.0]), torch.zeros(3)):
        g, conflict = prograd_direction(g_d, g_g)  # dot 0.5, 0, 0
        assert not conflict and torch.equal(g, g_d)


def test_general_loss_is_t2_times_the_kl_of_the_zero_shot_prediction():
    g = torch.Generator().manual_seed(0)
    z, z_zs = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    T = 2.0
    p_zs, p = F.softmax(z_zs / T, dim=-1), F.softmax(z / T, dim=-1)
    by_hand = T * T * (p_zs * (p_zs.log() - p.log())).sum(dim=1).mean()
    assert float(general_loss(z, z_zs, T)) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(general_loss(z_zs, z_zs, T)) == pytest.approx(0.0, abs=1e-6)


def _method(name, task, backbone, tmp_path, **options):
    options = {"epochs": 1, "warmup_epochs": 0, "batch_size": 64, **options}
    cfg = RunConfig(
        task=str(task.folder),
        out=str(tmp_path / "unused"),
        method=name,
        device="cpu",
        show_progress=False,
        options=options,
    )
    return build_method(cfg, task, backbone)


def _batch(backbone, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, backbone.output_dim, generator=g), dim=-1)
    return feats, torch.randint(0, 3, (n,), generator=g)


def _shift(ctx, seed):
    return 0.5 * torch.randn(ctx.shape, generator=torch.Generator().manual_seed(seed))


def test_backward_writes_the_projected_gradient_of_the_two_terms(loaded_toy_task, backbone, tmp_path):
    m = _method("prograd", loaded_toy_task, backbone, tmp_path)
    assert isinstance(m, ProGrad)
    ctx0 = m.prompt.ctx.detach().clone()
    seen = set()
    for seed in range(6):  # contexts moved off the zero-shot start, each with its own batch
        feats, labels = _batch(backbone, seed=seed)
        with torch.no_grad():
            m.prompt.ctx.copy_(ctx0 + _shift(ctx0, seed))
        terms = m.loss(feats, labels)
        assert float(terms["gap"]) > m.cfg.gap_tol  # the sign decides, not the tolerance
        (g_d,) = torch.autograd.grad(terms["ce"], [m.prompt.ctx], retain_graph=True)
        (g_g,) = torch.autograd.grad(terms["kl"], [m.prompt.ctx], retain_graph=True)
        dot = float((g_d * g_g).sum())
        expected = g_d - (dot / float((g_g * g_g).sum())) * g_g if dot < 0 else g_d
        m.prompt.ctx.grad = None
        m.backward(terms)
        assert torch.allclose(m.prompt.ctx.grad, expected, rtol=1e-5, atol=1e-7)
        assert float(terms["conflict"]) == float(dot < 0)
        seen.add(dot < 0)
    assert seen == {True, False}, "the perturbations should give both conflicting and agreeing gradients"


def test_a_prograd_step_differs_from_a_coop_step_exactly_when_the_gradients_conflict(
    loaded_toy_task, backbone, tmp_path
):
    """One step of the loop (lr 1, no weight decay: the step is -G) for ProGrad and CoOp from the
    same context and batch: the same step without a conflict, another one with."""
    recipe = {"lr": 1.0, "weight_decay": 0.0}
    outcomes = []
    for seed in range(6):  # contexts moved off the zero-shot start, each with its own batch
        feats, labels = _batch(backbone, seed=seed)
        pg = _method("prograd", loaded_toy_task, backbone, tmp_path, **recipe)
        coop = _method("coop", loaded_toy_task, backbone, tmp_path, **recipe)
        assert type(coop) is get_method("coop")
        shift = _shift(pg.prompt.ctx, seed)
        with torch.no_grad():
            pg.prompt.ctx.add_(shift)
            coop.prompt.ctx.add_(shift)
        start = pg.prompt.ctx.detach().clone()
        assert torch.equal(start, coop.prompt.ctx)
        (rec,) = train(pg, lambda e, b=(feats, labels): b, pg.cfg, seed=1, show_progress=False)
        train(coop, lambda e, b=(feats, labels): b, coop.cfg, seed=1, show_progress=False)
        assert rec["steps"] == 1 and "kl" in rec and rec["total"] == rec["ce"]
        step_pg, step_coop = pg.prompt.ctx.detach() - start, coop.prompt.ctx.detach() - start
        assert step_coop.norm() > 0
        conflict = rec["conflict"] == 1.0
        if conflict:
            assert (step_pg - step_coop).norm() > 1e-3 * step_coop.norm(), seed
        else:
            assert torch.allclose(step_pg, step_coop, rtol=1e-5, atol=1e-7), seed
        outcomes.append(conflict)
    assert True in outcomes and False in outcomes


def test_at_the_zero_shot_start_the_general_gradient_is_noise_and_is_not_followed(
    loaded_toy_task, backbone, tmp_path
):
    """Context = "a photo of a": the prompts reproduce the zero-shot logits, so the two predictions
    agree up to float rounding (gap) and G_g is rounding noise; at gap <= gap_tol the step is G_d
    whatever the sign of G_d.G_g. With gap_tol = 0 the sign decides (when the gap is not exactly 0)."""
    feats, labels = _batch(backbone)
    for tol in (1e-6, 0.0):
        m = _method("prograd", loaded_toy_task, backbone, tmp_path, gap_tol=tol)
        terms = m.loss(feats, labels)
        assert abs(float(terms["kl"].detach())) < 1e-6 and float(terms["gap"]) <= 1e-6
        (g_d,) = torch.autograd.grad(terms["ce"], [m.prompt.ctx], retain_graph=True)
        (g_g,) = torch.autograd.grad(terms["kl"], [m.prompt.ctx], retain_graph=True)
        m.backward(terms)
        if tol > 0:
            assert float(terms["conflict"]) == 0.0 and torch.allclose(m.prompt.ctx.grad, g_d, atol=1e-7)
        else:
            noise_conflict = bool((g_d * g_g).sum() < 0) and float(terms["gap"]) > 0
            assert float(terms["conflict"]) == float(noise_conflict)


def test_published_defaults_of_prograd():
    cls = get_method("prograd")
    cfg = cls.Config()
    assert (cfg.batch_size, cfg.lr, cfg.epochs, cfg.n_ctx, cfg.init_words) == (
        32,
        0.002,
        100,
        4,
        "a photo of a",
    )
    assert (cfg.T, cfg.prograd_lambda, cfg.gap_tol) == (1.0, 1.0, 1e-6)
    for ds in ("midas", "derm7pt"):  # DermaMNIST's config (T = 4) for the dermoscopy tasks
        assert cls.task_defaults[ds].values == {"T": 4.0}
        assert "DermaMNIST" in cls.task_defaults[ds].source
