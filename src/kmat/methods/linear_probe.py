"""Linear probe (Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021, Sec. 3.2 / App. A.3) on BiomedCLIP (docs/methods.md, "Linear probe").

L2-regularised multinomial logistic regression on the frozen, L2-normalised high-end image
features of the few-shot shots (scikit-learn's ``LogisticRegression``, lbfgs)::

    (W, b) = argmin_{W, b}  1/2 ||W||_F^2 + C * sum_i CE(W f_i + b, y_i)        logits = f . W^T + b

The inverse regularisation ``C`` is chosen on the **high-end** validation split (the CLIP paper's
protocol: a sweep over a log grid, then the classifier refit with the chosen C). Recipe values from
BiomedCoOp (Koleilat et al., CVPR 2025) ``configs/trainers/LP/few_shot.yaml`` and its linear-probe
trainer: the coarse grid ``C in {1e-6, 1e-4, 1e-2, 1, 1e2, 1e4, 1e6}``, then ``num_step: 8``
refinement steps in log space around the best C (each halves the bracket), lbfgs with at most 1000
iterations. Choices of kmat (documented, configurable):

- the C kept is the best of **every** C tried (val accuracy, ties broken by the lower validation
  cross-entropy, then by the smaller C); the reference keeps the better end of its last bracket;
- the final classifier is refit on the training shots only (validation images never train a
  method: they are there to choose C); without a validation split, ``C = default_C``.

Nothing is learned by the engine (``trains = False``): the classifier is fitted in :meth:`fit`, whose
answer records the chosen C and every C tried with its validation accuracy. There is no text side:
the class embeddings are the normalised weight rows (the same for both modalities), and both
modalities are classified with ``f . W^T + b`` (saved as the run's head, ``weight`` and ``bias``).
Before :meth:`fit` (never in a run) ``W = s * t^zs``, ``b = 0``: the zero-shot classifier.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import Deployment, Method, MethodContext, TrainView
from kmat.methods.config import option
from kmat.methods.zeroshot import NoTrainingConfig

LP_SOURCE = (
    "BiomedCoOp (Koleilat et al., CVPR 2025) configs/trainers/LP/few_shot.yaml and its LinearProbe trainer"
)


@dataclass
class LinearProbeConfig(NoTrainingConfig):
    """The CLIP paper's linear probe with BiomedCoOp's search of C (see the module docstring)."""

    unused = frozenset(
        {"epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "warmup_lr"}
    )
    unused_why = "a logistic regression fitted in closed form, its C chosen on the few-shot val subset"

    c_min_exponent: int = option(-6, f"smallest C = 10^e of the coarse grid searched on val ({LP_SOURCE})")
    c_max_exponent: int = option(6, f"largest C = 10^e of the coarse grid ({LP_SOURCE})")
    c_exponent_step: int = option(2, f"step of e on the coarse grid ({LP_SOURCE})", min=1)
    refine_steps: int = option(
        8, f"log-space bisection steps around the best C ({LP_SOURCE}: num_step)", min=0
    )
    max_iter: int = option(1000, f"lbfgs iterations per fit ({LP_SOURCE})", min=1)
    default_C: float = option(
        1.0, "C without a validation split (scikit-learn's default)", min=0, min_exclusive=True
    )
    template: str = option(
        "a photo of a {classname}.", "prompt of the zero-shot classifier an unfitted probe starts from"
    )


def fit_logistic(
    feats: Tensor, labels: Tensor, C: float, num_classes: int, max_iter: int
) -> tuple[Tensor, Tensor]:
    """``(W, b)`` of scikit-learn's L2 logistic regression (lbfgs) with inverse regularisation ``C``,
    as softmax logits ``f . W^T + b`` over all ``num_classes`` (a class without shots gets a row of
    zeros and a bias of -inf-like ``-1e4``). A two-class fit (one weight vector ``w``) is written
    symmetrically, ``W = [-w/2, w/2]``, ``b = [-b/2, b/2]``: the same probabilities."""
    from sklearn.linear_model import LogisticRegression

    x = feats.detach().double().cpu().numpy()
    y = labels.detach().cpu().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on separable few-shot data
        clf = LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs").fit(x, y)
    coef, icpt = np.asarray(clf.coef_), np.asarray(clf.intercept_)
    if coef.shape[0] == 1:  # binary: p(classes_[1]) = sigmoid(w . x + b)
        coef = np.concatenate([-coef / 2, coef / 2])
        icpt = np.concatenate([-icpt / 2, icpt / 2])
    W = torch.zeros(num_classes, feats.shape[1], dtype=torch.float64)
    b = torch.full((num_classes,), -1e4, dtype=torch.float64)
    idx = torch.as_tensor(np.asarray(clf.classes_), dtype=torch.long)
    W[idx] = torch.from_numpy(coef)
    b[idx] = torch.from_numpy(icpt)
    return W.float(), b.float()


def score(W: Tensor, b: Tensor, feats: Tensor, labels: Tensor) -> tuple[float, float]:
    """``(accuracy in %, mean cross-entropy)`` of ``f . W^T + b`` on labelled features."""
    z = feats.float().cpu() @ W.T + b
    y = labels.cpu()
    return float((z.argmax(dim=1) == y).float().mean() * 100), float(F.cross_entropy(z, y))


def search_C(
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    num_classes: int,
    exponents: list[int],
    refine_steps: int,
    max_iter: int,
) -> tuple[float, list[dict[str, float]]]:
    """The C with the best validation accuracy (ties: lower val cross-entropy, then smaller C) over
    the coarse grid ``10^e``, then ``refine_steps`` bisection steps in log10 space: the bracket
    ``[log C* - 1, log C* + 1]`` around the best, each step fitting both ends, moving to the half
    of the better end. Returns ``(C, tried)`` with every C tried and its val accuracy and loss."""
    tried: dict[float, tuple[float, float]] = {}

    def evaluate(log_c: float) -> tuple[float, float]:
        key = round(log_c, 12)
        if key not in tried:
            W, b = fit_logistic(*train, C=10.0**key, num_classes=num_classes, max_iter=max_iter)
            tried[key] = score(W, b, *val)
        return tried[key]

    def best() -> float:
        return min(tried, key=lambda k: (-tried[k][0], tried[k][1], k))

    for e in sorted(exponents):
        evaluate(float(e))
    lo, hi = best() - 1.0, best() + 1.0
    for _ in range(refine_steps):
        left, right = evaluate(lo), evaluate(hi)
        mid = (lo + hi) / 2
        if (left[0], -left[1]) < (right[0], -right[1]):  # the reference: move towards the better end
            lo = mid
        else:
            hi = mid
    k = best()
    record = [{"C": 10.0**e, "val_acc": a, "val_ce": ce} for e, (a, ce) in sorted(tried.items())]
    return 10.0**k, record


@register
class LinearProbe(Method[LinearProbeConfig]):
    """Logistic regression on the frozen high-end image features: ``logits = f . W^T + b``."""

    name = "linear_probe"
    Config = LinearProbeConfig
    trains = False
    weight: Tensor  # (C, D) buffer
    bias: Tensor  # (C,) buffer

    def __init__(self, ctx: MethodContext, cfg: LinearProbeConfig) -> None:
        super().__init__(ctx, cfg)
        t = ctx.zeroshot_embeddings(cfg.template)
        self.register_buffer("weight", (self.logit_scale * t).clone())
        self.register_buffer("bias", torch.zeros(t.shape[0], device=t.device))

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise RuntimeError("linear_probe is fitted in closed form (fit), not by the training loop")

    @torch.no_grad()
    def fit(self, train: TrainView, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """Choose C on the few-shot validation subset (high-end) (:func:`search_C`), refit on the shots."""
        feats, labels = train(0)
        c = self.weight.shape[0]
        if val is not None and len(val[1]):
            cfg = self.cfg
            grid = list(range(cfg.c_min_exponent, cfg.c_max_exponent + 1, cfg.c_exponent_step))
            C, tried = search_C((feats, labels), val, c, grid, cfg.refine_steps, cfg.max_iter)
        else:
            C, tried = self.cfg.default_C, []
        W, b = fit_logistic(feats, labels, C=C, num_classes=c, max_iter=self.cfg.max_iter)
        self.weight.copy_(W.to(self.weight))
        self.bias.copy_(b.to(self.bias))
        return {"C": C, "log10_C": math.log10(C), "searched": tried}

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        """The normalised weight rows ``norm(W_c)`` (no text side; the same for both roles)."""
        t = F.normalize(self.weight, dim=-1)
        return {"high": t, "low": t}

    def logits(self, feats: Tensor, role: str) -> Tensor:
        """``f . W^T + b`` for both roles."""
        return feats.to(self.weight) @ self.weight.T + self.bias

    @torch.no_grad()
    def predict_logits(self, feats: Tensor, role: str, batch_size: int = 1024) -> Tensor:
        chunks = [
            self.logits(feats[i : i + batch_size], role).cpu() for i in range(0, len(feats), batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, self.weight.shape[0])

    def head(self) -> dict[str, Tensor]:
        """The fitted classifier ``weight`` (C, D) and ``bias`` (C,)."""
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def deployed_logits(cls, dep: Deployment, feats: Tensor, role: str) -> Tensor:
        """``f . W^T + b`` from the saved head."""
        W = dep.head["weight"].to(feats.device, feats.dtype)
        return feats @ W.T + dep.head["bias"].to(feats.device, feats.dtype)
