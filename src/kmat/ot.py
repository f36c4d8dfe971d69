"""Entropic Fused Gromov-Wasserstein (FGW) alignment of two prompt manifolds (K-MaT, Sec. 2).

Given high-end class embeddings ``X = t^H`` (a fixed reference, detached) and low-end class
embeddings ``Y = t^L`` (learnable), with structure matrices ``C1[i, j] = d(x_i, x_j)``,
``C2[k, l] = d(y_k, y_l)`` and feature cost ``M[i, k] = d(x_i, y_k)``, the coupling

    T* = argmin_T (1 - alpha) <M, T> + alpha * sum_ijkl (C1[i,j] - C2[k,l])^2 T[i,k] T[j,l] - epsilon H(T)

over couplings with uniform marginals is solved *without gradient* (POT's projected-gradient
entropic FGW, in float64, Sinkhorn capped at ``max_iter`` iterations), and the loss is evaluated
with ``T*`` held fixed:

    L_FGW = (1 - alpha) * sum_ik M[i,k] T*[i,k] + alpha * sum_ijkl (C1[i,j] - C2[k,l])^2 T*[i,k] T*[j,l]

(Vayer et al., ICML 2019; alpha weights the structure term as in POT). By the envelope theorem the
gradient with ``T*`` fixed is the exact gradient of the entropic objective. Distances use
``torch.cdist`` (finite gradients when two embeddings coincide); costs are never rescaled.
"""

from __future__ import annotations

import warnings
from typing import Literal, overload

import numpy as np
import torch
from torch import Tensor

Metric = Literal["euclidean", "sqeuclidean", "cosine"]


def pairwise_cost(a: Tensor, b: Tensor, metric: Metric = "euclidean") -> Tensor:
    """Cost matrix ``d(a_i, b_j)``: Euclidean (default), squared Euclidean, or cosine distance."""
    if metric == "euclidean":
        return torch.cdist(a, b, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "sqeuclidean":
        return torch.cdist(a, b, p=2.0, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    if metric == "cosine":
        an = torch.nn.functional.normalize(a, dim=-1)
        bn = torch.nn.functional.normalize(b, dim=-1)
        return 1.0 - an @ bn.T
    raise ValueError(f"unknown metric {metric!r}: use 'euclidean', 'sqeuclidean' or 'cosine'")


@torch.no_grad()
def fgw_coupling(
    M: Tensor,
    C1: Tensor,
    C2: Tensor,
    alpha: float = 0.1,
    epsilon: float = 0.1,
    max_iter: int = 100,
    outer_max_iter: int = 50,
) -> Tensor:
    """Entropic FGW coupling ``T*`` (uniform marginals), solved in float64 by POT, no gradient.

    ``max_iter`` caps the Sinkhorn iterations of each projection (the paper's "max 100
    iterations"); ``outer_max_iter`` caps the projected-gradient loop (it converges in ~11).
    Returned with ``M``'s dtype and device.
    """
    import ot

    m = M.detach().double().cpu().numpy()
    c1 = C1.detach().double().cpu().numpy()
    c2 = C2.detach().double().cpu().numpy()
    p = np.full(m.shape[0], 1.0 / m.shape[0])
    q = np.full(m.shape[1], 1.0 / m.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        T = ot.gromov.entropic_fused_gromov_wasserstein(
            m,
            c1,
            c2,
            p,
            q,
            loss_fun="square_loss",
            epsilon=epsilon,
            alpha=alpha,
            max_iter=outer_max_iter,
            numItermax=max_iter,
            warn=False,
        )
    if not np.isfinite(T).all() or abs(T.sum() - 1.0) > 1e-6:
        raise FloatingPointError(
            "FGW solver returned no valid transport plan; increase epsilon or check the embeddings"
        )
    return torch.as_tensor(T, dtype=M.dtype, device=M.device)


def fgw_objective(M: Tensor, C1: Tensor, C2: Tensor, T: Tensor, alpha: float) -> Tensor:
    """``(1-alpha) <M, T> + alpha * sum_ijkl (C1[i,j] - C2[k,l])^2 T[i,k] T[j,l]`` for a given ``T``.

    The quadruple sum is expanded as ``sum C1^2 (a a^T) + sum C2^2 (b b^T) - 2 <C1 T C2^T, T>``
    with ``a = T 1`` and ``b = T^T 1`` (exact for any ``T``, not only for the marginals).
    """
    a = T.sum(dim=1)
    b = T.sum(dim=0)
    gw = (
        (C1**2 * torch.outer(a, a)).sum()
        + (C2**2 * torch.outer(b, b)).sum()
        - 2.0 * (C1 @ T @ C2.T * T).sum()
    )
    return (1.0 - alpha) * (M * T).sum() + alpha * gw


@overload
def fgw_loss(
    x_high: Tensor,
    y_low: Tensor,
    alpha: float = ...,
    epsilon: float = ...,
    max_iter: int = ...,
    metric: Metric = ...,
    return_coupling: Literal[False] = ...,
    outer_max_iter: int = ...,
) -> Tensor: ...


@overload
def fgw_loss(
    x_high: Tensor,
    y_low: Tensor,
    alpha: float = ...,
    epsilon: float = ...,
    max_iter: int = ...,
    metric: Metric = ...,
    *,
    return_coupling: Literal[True],
    outer_max_iter: int = ...,
) -> tuple[Tensor, Tensor]: ...


@overload
def fgw_loss(
    x_high: Tensor,
    y_low: Tensor,
    alpha: float = ...,
    epsilon: float = ...,
    max_iter: int = ...,
    metric: Metric = ...,
    return_coupling: bool = ...,
    outer_max_iter: int = ...,
) -> Tensor | tuple[Tensor, Tensor]: ...


def fgw_loss(
    x_high: Tensor,
    y_low: Tensor,
    alpha: float = 0.1,
    epsilon: float = 0.1,
    max_iter: int = 100,
    metric: Metric = "euclidean",
    return_coupling: bool = False,
    outer_max_iter: int = 50,
) -> Tensor | tuple[Tensor, Tensor]:
    """K-MaT's manifold-alignment loss ``L_FGW`` between high-end and low-end class embeddings.

    ``L_FGW = (1 - alpha) sum_ik M_ik T*_ik + alpha sum_ijkl (C1_ij - C2_kl)^2 T*_ik T*_jl``, with
    ``M = d(x_high, y_low)``, ``C1 = d(x_high, x_high)``, ``C2 = d(y_low, y_low)`` and ``T*`` the
    entropic FGW coupling (epsilon, at most ``max_iter`` Sinkhorn iterations) held fixed.
    ``x_high`` is detached: the gradient reaches ``y_low`` only, through ``M`` and ``C2``.
    Returns a scalar tensor (and ``T*`` if ``return_coupling``).
    """
    if x_high.ndim != 2 or y_low.ndim != 2 or x_high.shape[1] != y_low.shape[1]:
        raise ValueError(
            f"x_high and y_low must be (n, d) and (m, d); got {tuple(x_high.shape)}, {tuple(y_low.shape)}"
        )
    x = x_high.detach()
    M = pairwise_cost(x, y_low, metric)
    C1 = pairwise_cost(x, x, metric)
    C2 = pairwise_cost(y_low, y_low, metric)
    T = fgw_coupling(
        M, C1, C2, alpha=alpha, epsilon=epsilon, max_iter=max_iter, outer_max_iter=outer_max_iter
    )
    loss = fgw_objective(M, C1, C2, T, alpha)
    return (loss, T) if return_coupling else loss
