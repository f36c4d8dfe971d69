"""ProGrad (Zhu et al., ICCV 2023, "Prompt-aligned Gradient for Prompt Tuning") on BiomedCLIP
(docs/methods.md, "ProGrad").

CoOp prompts; each step follows the domain gradient only where it does not conflict with the
"general knowledge" of the frozen zero-shot classifier:

- domain loss ``L_d = CE(z, y)`` with ``z = s * f . t`` (the learned prompts);
- general loss ``L_g = T^2 * 1/B sum_b KL(softmax(z_zs_b / T) || softmax(z_b / T))`` with
  ``z_zs = s * f . t^zs`` the frozen zero-shot logits of "a photo of a {classname}.";
- ``G_d = dL_d/dV``, ``G_g = dL_g/dV`` (V: every learnable parameter, flattened into one vector);
- ``G = G_d - lambda * (G_d . G_g / ||G_g||^2) G_g`` if ``G_d . G_g < 0``, else ``G = G_d``;
  ``G`` is what the optimiser steps along (:meth:`ProGrad.backward`).

With ``lambda = 1`` the step is ``G_d`` with its component against ``G_g`` removed (orthogonal to
``G_g``). ``L_g`` is never minimised: it only sets the direction not to go against. The same prompts
classify both modalities (deployment: the class embeddings, as CoOp).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import cross_entropy
from kmat.methods.config import option
from kmat.methods.coop import SharedPromptConfig, SharedPromptMethod
from kmat.methods.published import published_task_defaults


@dataclass
class ProGradConfig(SharedPromptConfig):
    """ProGrad's published BiomedCLIP few-shot recipe (BiomedCoOp, Koleilat et al., CVPR 2025,
    configs/trainers/ProGrad/few_shot/*.yaml): SGD lr 0.002, 100 epochs, cosine with one constant
    warm-up epoch at 1e-5, context "a photo of a" (4 vectors); batch 32 (those configs set none:
    Dassl's default); T = 1 and lambda = 1 are the code's defaults (its train.py)."""

    T: float = option(
        1.0,
        "temperature T of the general-knowledge term T^2 KL(softmax(z_zs/T) || softmax(z/T))",
        min=0,
        min_exclusive=True,
    )
    prograd_lambda: float = option(
        1.0,
        "lambda of the projection G = G_d - lambda (G_d.G_g / |G_g|^2) G_g when G_d.G_g < 0 "
        "(1: remove the conflicting component; 0: plain CoOp)",
        min=0,
    )
    zs_template: str = option(
        "a photo of a {classname}.", "hand-written prompt of the zero-shot embeddings t^zs"
    )
    gap_tol: float = option(
        1e-6,
        "no projection while max |softmax(z/T) - softmax(z_zs/T)| <= gap_tol: the prompts then agree "
        "with the zero-shot prediction to float precision and G_g is rounding noise (0: always project "
        "on the sign of G_d.G_g)",
        min=0,
    )


def general_loss(z: Tensor, z_zs: Tensor, T: float) -> Tensor:
    """``L_g = T^2 * 1/B sum_b KL(softmax(z_zs_b / T) || softmax(z_b / T))`` (zero-shot ``z_zs`` fixed).

    Its gradient equals that of the official ``T^2 * 1/B sum_b sum_c -p_zs log p`` (the two differ
    by the zero-shot entropy, a constant); this form is a true KL (0 when the prompts agree)."""
    log_p = F.log_softmax(z / T, dim=-1)
    log_q = F.log_softmax(z_zs.detach().to(z.dtype) / T, dim=-1)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * (T * T)


def prograd_direction(g_d: Tensor, g_g: Tensor, lam: float = 1.0) -> tuple[Tensor, bool]:
    """``(G, conflict)`` from flattened gradients ``G_d`` (domain) and ``G_g`` (general):

    ``G = G_d - lam * (G_d . G_g / ||G_g||^2) G_g`` when ``G_d . G_g < 0`` (``conflict``), else ``G_d``.
    A zero ``G_g`` never conflicts."""
    dot = torch.dot(g_d, g_g)
    if not bool(dot < 0):
        return g_d, False
    return g_d - lam * (dot / torch.dot(g_g, g_g)) * g_g, True


@register
class ProGrad(SharedPromptMethod[ProGradConfig]):
    name = "prograd"
    Config = ProGradConfig
    task_defaults = published_task_defaults(dermamnist={"T": 4.0})

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``{"ce": L_d, "kl": L_g, "gap": ..., "total": L_d}``: ``total`` is the domain loss whose
        (projected) gradient is followed; :meth:`backward` makes the step from ``ce`` and ``kl``.
        ``gap = max_(b,c) |softmax(z/T) - softmax(z_zs/T)|`` (no gradient): how far the prompts'
        prediction is from the zero-shot one (``dL_g/dz = T (softmax(z/T) - softmax(z_zs/T)) / B``)."""
        z, _ = self.ce_logits(feats)
        ce = cross_entropy(z, labels)
        t_zs = self.ctx.zeroshot_embeddings(self.cfg.zs_template)
        z_zs = self.logit_scale * feats.to(t_zs.device) @ t_zs.T
        kl = general_loss(z, z_zs, self.cfg.T)
        with torch.no_grad():
            T = self.cfg.T
            gap = (F.softmax(z / T, dim=-1) - F.softmax(z_zs.to(z.dtype) / T, dim=-1)).abs().max()
        return {"ce": ce, "kl": kl, "gap": gap, "total": ce}

    def backward(self, terms: dict[str, Tensor]) -> None:
        """Write ``G`` (:func:`prograd_direction` of ``G_d = dce/dV`` and ``G_g = dkl/dV``, all
        learnable parameters flattened into one vector) into the parameters' ``.grad``.

        While ``gap <= gap_tol`` (e.g. at the start, where the context is the zero-shot prompt's words
        and the prompts reproduce the zero-shot logits) ``G = G_d``: ``G_g`` is then float rounding
        noise, whose direction the projection would otherwise follow as if it were knowledge (the
        projection does not depend on the size of ``G_g``), and whose sign may differ between machines.

        Adds the term ``conflict`` (1.0 when the gradients conflicted and were projected, else 0.0)
        to ``terms``, so that the loop's history shows the fraction of steps projected per epoch."""
        params = [p for p in self.parameters() if p.requires_grad]
        if float(terms["gap"]) <= self.cfg.gap_tol:
            g_d = torch.autograd.grad(terms["ce"], params, allow_unused=True)
            g, conflict = _flatten(g_d, params), False
        else:
            g_d = torch.autograd.grad(terms["ce"], params, retain_graph=True, allow_unused=True)
            g_g = torch.autograd.grad(terms["kl"], params, allow_unused=True)
            g, conflict = prograd_direction(
                _flatten(g_d, params), _flatten(g_g, params), self.cfg.prograd_lambda
            )
        offset = 0
        for p in params:
            n = p.numel()
            part = g[offset : offset + n].view_as(p)
            offset += n
            p.grad = part.clone() if p.grad is None else p.grad + part
        terms["conflict"] = torch.tensor(float(conflict))


def _flatten(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    """One vector of the gradients (zeros for a parameter a loss does not reach)."""
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )
