import pytest
import torch

from kmat.data.task import TaskError, load_task
from kmat.errors import ConfigError
from kmat.methods import available_methods, get_method
from kmat.methods.base import MethodContext
from kmat.methods.config import resolve_config
from kmat.methods.kmat import KMaTConfig, anchor_loss
from kmat.ot import fgw_loss


def _method(backbone, task, **kw):
    cls = get_method("kmat")
    torch.manual_seed(0)
    return cls(MethodContext(backbone, task), resolve_config(cls.Config, kw))


def test_registered():
    assert "kmat" in available_methods()
    with pytest.raises(ConfigError, match="unknown method"):
        get_method("nope")
    with pytest.raises(ValueError, match="no option"):
        resolve_config(KMaTConfig, {"lamda_fgw": 1.0})


def test_anchor_loss_formula():
    t = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [1.0, 0.0]]])
    p = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.6, 0.8], [0.0, 1.0]]])
    d = torch.tensor([2**0.5, 0.0, 0.0, 2**0.5])
    assert anchor_loss(t, p).item() == pytest.approx(d.mean().item(), abs=1e-5)
    assert anchor_loss(t, p, squared=True).item() == pytest.approx((d**2).mean().item(), abs=1e-6)


def test_total_loss_is_sum_of_its_terms(backbone, loaded_toy_task):
    m = _method(backbone, loaded_toy_task, lambda_anchor=0.5, lambda_fgw=2.0)
    feats = torch.nn.functional.normalize(torch.randn(4, backbone.output_dim), dim=-1)
    labels = torch.tensor([0, 1, 2, 0])
    terms = m.loss(feats, labels)
    total = terms["total"]
    t = m.prompt()
    ce = torch.nn.functional.cross_entropy(backbone.logit_scale * feats @ t[0].T, labels)
    anc = anchor_loss(t, m.ctx.prototypes())
    fgw = fgw_loss(t[0], t[1])
    assert terms["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert terms["anchor"].item() == pytest.approx(anc.item(), rel=1e-5)
    assert terms["fgw"].item() == pytest.approx(fgw.item(), rel=1e-5)
    assert total.item() == pytest.approx(ce.item() + 0.5 * anc.item() + 2.0 * fgw.item(), rel=1e-5)


def test_switches_remove_their_terms(backbone, loaded_toy_task):
    feats = torch.nn.functional.normalize(torch.randn(3, backbone.output_dim), dim=-1)
    labels = torch.tensor([0, 1, 2])
    terms = _method(backbone, loaded_toy_task, anchor=False, fgw=False).loss(feats, labels)
    assert set(terms) == {"ce", "total", "dist_hl"}  # dist_hl: a diagnostic, always reported
    anchor_keys = {"anchor", "cos_anchor_high", "cos_anchor_low"}  # the cosines: diagnostics of the anchor
    terms = _method(backbone, loaded_toy_task, lambda_fgw=0.0).loss(feats, labels)
    assert set(terms) == {"ce", "total", "dist_hl"} | anchor_keys
    terms = _method(backbone, loaded_toy_task).loss(feats, labels)
    fgw_keys = {"fgw", "fgw_feature", "fgw_structure", "fgw_plan_diag", "fgw_plan_entropy"}
    assert set(terms) == {"ce", "total", "dist_hl"} | anchor_keys | fgw_keys
    diagnostics = fgw_keys - {"fgw"} | {"dist_hl", "cos_anchor_high", "cos_anchor_low"}
    assert all(not terms[k].requires_grad for k in diagnostics)
    t = _method(backbone, loaded_toy_task).prompt()
    assert terms["dist_hl"].item() == pytest.approx((t[0] - t[1]).norm(dim=-1).mean().item(), rel=1e-5)


def test_anchor_cosines_are_the_mean_cosine_to_the_description_prototypes(backbone, loaded_toy_task):
    """``cos_anchor_m = mean_i cos(t_i^m, tbar_i^m)``: 1 when the prompts of modality m are the
    description prototypes (the low-end prompts end there when the anchor dominates)."""
    m = _method(backbone, loaded_toy_task, lambda_fgw=0.0)
    feats = torch.nn.functional.normalize(torch.randn(3, backbone.output_dim), dim=-1)
    t = m.prompt().detach()
    g = torch.Generator().manual_seed(0)
    other = torch.nn.functional.normalize(torch.randn(t[0].shape, generator=g), dim=-1)
    # prototypes: the low-end prompts themselves, and unrelated unit vectors for the high end
    m.ctx._cache["prototypes"] = torch.stack([other, t[1]])
    terms = m.loss(feats, torch.tensor([0, 1, 2]))
    assert terms["cos_anchor_low"].item() == pytest.approx(1.0, abs=1e-5)
    want = torch.nn.functional.cosine_similarity(t[0], other, dim=-1).mean()
    assert terms["cos_anchor_high"].item() == pytest.approx(want.item(), abs=1e-5)
    assert abs(want.item()) < 0.5  # so the two cannot be confused


def test_ce_does_not_touch_low_end_context_but_fgw_does(backbone, loaded_toy_task):
    feats = torch.nn.functional.normalize(torch.randn(3, backbone.output_dim), dim=-1)
    labels = torch.tensor([0, 1, 2])
    m = _method(backbone, loaded_toy_task, anchor=False, fgw=False)
    m.loss(feats, labels)["total"].backward()
    assert torch.count_nonzero(m.prompt.modality_ctx.grad[1]) == 0
    assert torch.count_nonzero(m.prompt.class_ctx.grad[1]) == 0
    m = _method(backbone, loaded_toy_task, anchor=False, fgw=True)
    m.loss(feats, labels)["total"].backward()
    assert torch.count_nonzero(m.prompt.class_ctx.grad[1]) > 0


def test_missing_descriptions_error_only_when_anchor_on(backbone, toy_task):
    (toy_task / "descriptions.json").unlink()
    task = load_task(toy_task)
    with pytest.raises(TaskError, match="descriptions"):
        _method(backbone, task)
    _method(backbone, task, lambda_anchor=0.0)  # fine without descriptions


def test_bf16_autocast_training_step_is_finite(backbone, loaded_toy_task):
    """--precision bf16 autocasts the frozen towers; the prompt gradients stay finite (fp32 params)."""
    m = _method(backbone, loaded_toy_task)
    backbone.set_precision("bf16")
    try:
        feats = torch.nn.functional.normalize(torch.randn(3, backbone.output_dim), dim=-1)
        loss = m.loss(feats, torch.tensor([0, 1, 2]))["total"]
        loss.backward()
    finally:
        backbone.set_precision("fp32")
    assert torch.isfinite(loss) and m.prompt.shared.grad is not None
    assert m.prompt.shared.dtype == torch.float32 and torch.isfinite(m.prompt.shared.grad).all()
