import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from kmat.ot import fgw_coupling, fgw_loss, fgw_objective, pairwise_cost


def _emb(n, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1).float()


def test_coupling_has_uniform_marginals():
    x, y = _emb(5, seed=1), _emb(5, seed=2)
    _, T = fgw_loss(x, y, return_coupling=True)
    assert torch.allclose(T.sum(1), torch.full((5,), 0.2), atol=1e-4)
    assert torch.allclose(T.sum(0), torch.full((5,), 0.2), atol=1e-4)


def test_alpha_zero_is_entropic_ot_cost_of_features():
    x, y = _emb(4, seed=3), _emb(4, seed=4)
    loss, T = fgw_loss(x, y, alpha=0.0, epsilon=0.1, return_coupling=True)
    M = pairwise_cost(x, y).double().numpy()
    p = np.full(4, 0.25)
    T_ot = ot.sinkhorn(p, p, M, 0.1, numItermax=100)
    assert np.abs(T.double().numpy() - T_ot).max() < 1e-6
    assert abs(loss.item() - float((M * T_ot).sum())) < 1e-5


@pytest.mark.parametrize("alpha", [0.1, 0.9])  # both readings of the paper's trade-off
def test_agrees_with_pot_entropic_fgw(alpha):
    x, y = _emb(6, seed=5), _emb(6, seed=6)
    loss, T = fgw_loss(x, y, alpha=alpha, epsilon=0.1, return_coupling=True)
    M = pairwise_cost(x, y).double().numpy()
    C1 = pairwise_cost(x, x).double().numpy()
    C2 = pairwise_cost(y, y).double().numpy()
    p = np.full(6, 1 / 6)
    T_pot, log = ot.gromov.entropic_fused_gromov_wasserstein(
        M, C1, C2, p, p, loss_fun="square_loss", epsilon=0.1, alpha=alpha, log=True, numItermax=100
    )
    assert np.abs(T.double().numpy() - T_pot).max() < 1e-6
    assert abs(loss.item() - log["fgw_dist"]) < 1e-5
    # the weights written out: (1 - alpha) on the feature term, alpha on the structure term
    gw = sum(
        (C1[i, j] - C2[k, m]) ** 2 * T_pot[i, k] * T_pot[j, m]
        for i in range(6)
        for j in range(6)
        for k in range(6)
        for m in range(6)
    )
    assert abs(loss.item() - ((1 - alpha) * float((M * T_pot).sum()) + alpha * gw)) < 1e-5


def test_default_reads_the_trade_off_as_the_feature_weight():
    """Default: 0.1 on the Wasserstein feature term, 0.9 on the structure term."""
    from kmat.methods.kmat import KMaTConfig
    from kmat.ot import DEFAULT_ALPHA, fgw_terms

    assert DEFAULT_ALPHA == 0.9 and KMaTConfig().alpha == 0.9
    x, y = _emb(4, seed=21), _emb(4, seed=22)
    terms = fgw_terms(x, y)
    assert torch.allclose(terms.loss, 0.1 * terms.feature + 0.9 * terms.structure)
    diag = terms.diagnostics()
    assert 0.25 - 1e-9 <= diag["fgw_plan_entropy"].item() * 2 <= 2.0  # between a permutation and uniform
    assert 0 <= diag["fgw_plan_diag"].item() <= 1


def test_plan_diagnostics_of_known_plans():
    from kmat.ot import FGWTerms

    z = torch.zeros(())
    uniform = FGWTerms(z, z, z, torch.full((3, 3), 1 / 9)).diagnostics()
    perm = FGWTerms(z, z, z, torch.eye(3) / 3).diagnostics()
    assert uniform["fgw_plan_diag"].item() == pytest.approx(1 / 3)
    assert uniform["fgw_plan_entropy"].item() == pytest.approx(1.0)
    assert perm["fgw_plan_diag"].item() == pytest.approx(1.0)
    assert perm["fgw_plan_entropy"].item() == pytest.approx(0.5)


def test_objective_matches_quadruple_sum():
    x, y = _emb(3, seed=7), _emb(4, seed=8)
    M, C1, C2 = pairwise_cost(x, y).double(), pairwise_cost(x, x).double(), pairwise_cost(y, y).double()
    T = torch.rand(3, 4, dtype=torch.float64)
    T = T / T.sum()
    brute = sum(
        (C1[i, j] - C2[k, m]) ** 2 * T[i, k] * T[j, m]
        for i in range(3)
        for j in range(3)
        for k in range(4)
        for m in range(4)
    )
    expected = 0.7 * (M * T).sum() + 0.3 * brute
    assert torch.allclose(fgw_objective(M, C1, C2, T, 0.3), expected, atol=1e-12)


def test_gradient_reaches_only_low_end():
    x = _emb(5, seed=9).requires_grad_()
    y = _emb(5, seed=10).requires_grad_()
    fgw_loss(x, y).backward()
    assert x.grad is None or torch.count_nonzero(x.grad) == 0
    assert y.grad is not None and torch.count_nonzero(y.grad) > 0


def test_gradient_is_that_of_fixed_coupling_objective():
    """Finite differences of the objective with T* fixed agree with autograd."""
    x = _emb(4, seed=11).double()
    y = _emb(4, seed=12).double().requires_grad_()
    loss, T = fgw_loss(x, y, alpha=0.1, return_coupling=True)
    loss.backward()
    h = 1e-6
    for idx in [(0, 0), (2, 5), (3, 17)]:
        yp, ym = y.detach().clone(), y.detach().clone()
        yp[idx] += h
        ym[idx] -= h
        f = lambda z: fgw_objective(pairwise_cost(x, z), pairwise_cost(x, x), pairwise_cost(z, z), T, 0.1)  # noqa: E731
        fd = (f(yp) - f(ym)) / (2 * h)
        assert abs(fd.item() - y.grad[idx].item()) < 1e-6


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_identical_inputs_have_finite_gradients(metric):
    x = _emb(4, seed=13)
    y = x.clone().requires_grad_()
    loss = fgw_loss(x, y, metric=metric)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(y.grad).all()


def test_coupling_is_stable_in_float32_with_small_epsilon():
    x, y = _emb(6, seed=14), _emb(6, seed=15)
    M, C1, C2 = pairwise_cost(x, y), pairwise_cost(x, x), pairwise_cost(y, y)
    T = fgw_coupling(M, C1, C2, epsilon=0.01)
    assert T.dtype == torch.float32 and abs(T.sum().item() - 1) < 1e-5


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        fgw_loss(torch.zeros(3, 4), torch.zeros(3, 5))
