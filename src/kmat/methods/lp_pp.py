"""LP++ (Huang et al., "LP++: A Surprisingly Strong Linear Probe for Few-Shot CLIP", CVPR 2024) on
BiomedCLIP (docs/methods.md, "LP++").

A linear probe whose class weights blend the visual class prototypes ``W_v`` (C, D) and the frozen
zero-shot text embeddings ``T`` (C, D) with learnable class-wise multipliers ``alpha`` (C,)::

    W = W_v + diag(alpha) T            l_ik = f_i . (w_k + alpha_k t_k)
    L(W_v, alpha) = -1/N sum_i log softmax(f_i . W^T)[y_i]

minimised full-batch by block-coordinate descent with data-driven step sizes (the paper's
Lipschitz-based majorisers; values as BiomedCoOp's LP++ trainer computes them, F = the N x D
matrix of shot features)::

    lr_W     = 4 N / lambda_max(F^T F)                       (every iteration; SGD momentum 0.9)
    lr_alpha = N / (4 max_k sum_i (f_i . t_k)^2)              (a plain gradient step every 10 iterations)

Initialisation (BiomedCoOp's LP++ trainer): ``W_v`` = the class prototypes, the **sum** of the
class's shot features (``init_prototypes = "sum"``; "mean" divides by the class's count);
``alpha_k = 250 * mean_c mean_{i in c} f_i . t_c`` for every class. Recipe from BiomedCoOp
(Koleilat et al., CVPR 2025) ``configs/trainers/LP2/few_shot.yaml``: 300 full-batch iterations
(``train_epoch: 300``, here ``epochs``); the trainer keeps the iteration with the best high-end
validation accuracy (later ones win ties), which kmat does too (``select_on_val``). kmat's choices
(documented): no bias (the paper's logits; the reference trainer adds a learned bias initialised at
random), and alpha's step uses the gradient of its iteration (the reference never clears alpha's
gradient, so its step uses the sum of all gradients so far).

Why a closed loop inside :meth:`fit` and not the engine: LP++ defines its own optimiser (two
blocks, full batch, step sizes computed from the data, a block updated every 10 iterations, model
selection on the validation split); the engine's mini-batch SGD with a warm-up and a cosine
schedule is another algorithm. So ``trains = False`` and the loop sits in :meth:`fit`, whose answer
records the step sizes, the initial alpha, the kept iteration and its validation accuracy.

Both modalities are classified with ``f . W^T``; the class embeddings are the normalised rows of W
(the same for both roles). Before :meth:`fit` (never in a run) ``W_v = 0``, ``alpha = s``: the
zero-shot classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import Deployment, Method, MethodContext, TrainView
from kmat.methods.config import MethodConfig, option

LPPP_SOURCE = (
    "BiomedCoOp (Koleilat et al., CVPR 2025) configs/trainers/LP2/few_shot.yaml and its LP++ trainer"
)


@dataclass
class LPPlusPlusConfig(MethodConfig):
    """LP++'s recipe; ``epochs`` counts its full-batch iterations, ``lr`` and the warm-up are unused
    (the step sizes come from the data)."""

    unused = frozenset({"batch_size", "lr", "warmup_epochs", "warmup_lr"})
    unused_why = "LP++ runs full-batch, its step sizes computed from the shots"
    epochs: int = option(
        300, f"full-batch iterations of LP++'s optimiser ({LPPP_SOURCE}: train_epoch 300)", min=0
    )
    batch_size: int = 1  # unused: full batch
    lr: float = 0.0  # unused: lr_W and lr_alpha are computed from the shots
    momentum: float = 0.9  # LPPP_SOURCE: SGD(momentum=0.9) on the visual prototypes
    weight_decay: float = 0.0  # LPPP_SOURCE: no weight decay
    warmup_epochs: int = 0
    alpha_every: int = option(10, f"iterations between two steps of alpha ({LPPP_SOURCE})", min=1)
    alpha_init_scale: float = option(
        250.0, f"alpha_0 = scale * mean_c mean_(i in c) f_i . t_c ({LPPP_SOURCE})"
    )
    init_prototypes: str = option(
        "sum",
        f"W_v init: the sum of the class's shot features ({LPPP_SOURCE}) or their mean",
        choices=("sum", "mean"),
    )
    select_on_val: bool = option(
        True,
        f"keep the iteration with the best accuracy on the few-shot val subset ({LPPP_SOURCE}); else the last",
    )
    template: str = option("a photo of a {classname}.", "prompt of the frozen text embeddings T")


def blended_weights(W_v: Tensor, alpha: Tensor, T: Tensor) -> Tensor:
    """LP++'s class weights ``W = W_v + diag(alpha) T`` (C, D)."""
    return W_v + alpha[:, None] * T


def lp_pp_loss(feats: Tensor, labels: Tensor, W_v: Tensor, alpha: Tensor, T: Tensor) -> Tensor:
    """``L = -1/N sum_i log softmax(f_i . (W_v + diag(alpha) T)^T)[y_i]``."""
    return F.cross_entropy(feats @ blended_weights(W_v, alpha, T).T, labels)


def step_sizes(feats: Tensor, T: Tensor) -> tuple[float, float]:
    """``(lr_W, lr_alpha) = (4N / lambda_max(F^T F), N / (4 max_k sum_i (f_i . t_k)^2))``."""
    n = feats.shape[0]
    f = feats.double()
    lam = float(torch.linalg.eigvalsh(f.T @ f).max())
    s = float(((f @ T.double().T) ** 2).sum(dim=0).max())
    return 4.0 * n / lam, n / (4.0 * s)


def initial_alpha(feats: Tensor, labels: Tensor, T: Tensor, scale: float) -> float:
    """``alpha_0 = scale * mean_c mean_{i in c} f_i . t_c`` (classes with shots)."""
    sims = feats.double() @ T.double().T  # (N, C)
    per_class = [sims[labels == c, c].mean() for c in labels.unique()]
    return float(scale * torch.stack(per_class).mean())


def prototypes(feats: Tensor, labels: Tensor, num_classes: int, mode: str) -> Tensor:
    """Visual class prototypes (C, D): the sum (or the mean) of each class's shot features."""
    one_hot = F.one_hot(labels, num_classes).to(feats.dtype)  # (N, C)
    W = one_hot.T @ feats
    return W / one_hot.sum(dim=0).clamp(min=1)[:, None] if mode == "mean" else W


@register
class LPPlusPlus(Method[LPPlusPlusConfig]):
    """``logits = f . (W_v + diag(alpha) T)^T``, fitted by LP++'s block-coordinate descent in :meth:`fit`."""

    name = "lp_pp"
    Config = LPPlusPlusConfig
    trains = False
    visual: Tensor  # W_v (C, D) buffer
    alpha: Tensor  # (C,) buffer
    text: Tensor  # T (C, D) buffer, the frozen zero-shot embeddings

    def __init__(self, ctx: MethodContext, cfg: LPPlusPlusConfig) -> None:
        super().__init__(ctx, cfg)
        t = ctx.zeroshot_embeddings(cfg.template)
        self.register_buffer("text", t.clone())
        self.register_buffer("visual", torch.zeros_like(t))
        self.register_buffer("alpha", torch.full((t.shape[0],), self.logit_scale, device=t.device))

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise RuntimeError("lp_pp is fitted by its own full-batch optimiser (fit), not by the training loop")

    def fit(self, train: TrainView, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """LP++'s block-coordinate descent (module docstring), with the iteration kept on val."""
        cfg = self.cfg
        feats, labels = train(0)
        dev = self.text.device
        feats, labels, T = feats.to(dev).float(), labels.to(dev), self.text.float()
        c = T.shape[0]
        lr_w, lr_a = step_sizes(feats, T)
        a0 = initial_alpha(feats, labels, T, cfg.alpha_init_scale)
        W_v = prototypes(feats, labels, c, cfg.init_prototypes).clone().requires_grad_(True)
        alpha = torch.full((c,), a0, device=dev).requires_grad_(True)
        opt = torch.optim.SGD([W_v], lr=lr_w, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        use_val = cfg.select_on_val and val is not None and len(val[1]) > 0
        best: tuple[float, int, Tensor, Tensor] | None = None
        loss = torch.zeros(())
        for it in range(cfg.epochs):
            loss = lp_pp_loss(feats, labels, W_v, alpha, T)
            opt.zero_grad(set_to_none=True)
            alpha.grad = None
            loss.backward()
            opt.step()
            if (it + 1) % cfg.alpha_every == 0:
                with torch.no_grad():
                    alpha -= lr_a * alpha.grad  # type: ignore[operator]
            if use_val:
                assert val is not None
                with torch.no_grad():
                    z = val[0].to(dev).float() @ blended_weights(W_v, alpha, T).T
                    acc = float((z.argmax(dim=1).cpu() == val[1].cpu()).float().mean() * 100)
                if best is None or acc >= best[0]:
                    best = (acc, it, W_v.detach().clone(), alpha.detach().clone())
        if best is None:
            best = (float("nan"), cfg.epochs - 1, W_v.detach().clone(), alpha.detach().clone())
        with torch.no_grad():
            self.visual.copy_(best[2])
            self.alpha.copy_(best[3])
        info: dict[str, Any] = {
            "lr_W": lr_w,
            "lr_alpha": lr_a,
            "alpha_init": a0,
            "iterations": cfg.epochs,
            "final_loss": float(loss.detach()),
        }
        if use_val:
            info.update(kept_iteration=best[1], val_acc=best[0])
        return info

    def weights(self) -> Tensor:
        """``W = W_v + diag(alpha) T`` (C, D)."""
        return blended_weights(self.visual, self.alpha, self.text)

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        """The normalised rows of ``W`` (the same for both roles)."""
        t = F.normalize(self.weights(), dim=-1)
        return {"high": t, "low": t}

    def logits(self, feats: Tensor, role: str) -> Tensor:
        """``f . W^T`` for both roles."""
        return feats.to(self.text) @ self.weights().T

    @torch.no_grad()
    def predict_logits(self, feats: Tensor, role: str, batch_size: int = 1024) -> Tensor:
        W = self.weights()
        chunks = [(feats[i : i + batch_size].to(W) @ W.T).cpu() for i in range(0, len(feats), batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0, W.shape[0])

    def head(self) -> dict[str, Tensor]:
        """``visual`` (W_v), ``alpha`` and ``text`` (T)."""
        return {"visual": self.visual, "alpha": self.alpha, "text": self.text}

    @classmethod
    def deployed_logits(cls, dep: Deployment, feats: Tensor, role: str) -> Tensor:
        """``f . (W_v + diag(alpha) T)^T`` from the saved head."""
        h = {k: v.to(feats.device, feats.dtype) for k, v in dep.head.items()}
        return feats @ blended_weights(h["visual"], h["alpha"], h["text"]).T
