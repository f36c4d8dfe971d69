"""The contract every registered method keeps with the engine, the runner and the command line.

One battery, parametrised over :func:`kmat.methods.available_methods` (so a method added to the
package is covered without touching this file), plus a method defined here, outside the package,
that is registered, trained and reported through ``kmat train`` / ``kmat reproduce`` with no other
change: the extension point the registry promises.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

import kmat.run.runner as runner_mod
from cli_helpers import reproduce_argv, toy_run_config, train_argv
from kmat.cli import main
from kmat.engine import load_checkpoint, train
from kmat.methods import available_methods, get_method, register, unregister
from kmat.methods.base import Deployment, Method, MethodContext, cross_entropy
from kmat.methods.config import MethodConfig, option, resolve_config
from kmat.run.config import RunConfig
from kmat.run.layout import RunLayout
from kmat.run.runner import build_method, evaluate_checkpoint, run

# --------------------------------------------------------------------------------------------
# A method defined outside the package: one learnable, context-free class-embedding table.


@dataclass
class TableConfig(MethodConfig):
    """A learnable table of class embeddings, started from the zero-shot ones plus noise."""

    epochs: int = 2
    batch_size: int = 4
    lr: float = 0.01
    table_noise: float = option(0.05, "std of the noise added to the zero-shot start of the table", min=0)


class ClassTable(Method[TableConfig]):
    """``t = norm(W)`` with ``W`` (C, D) learned directly; the same table classifies both modalities."""

    name = "contract_table"
    Config = TableConfig

    def __init__(self, ctx: MethodContext, cfg: TableConfig) -> None:
        super().__init__(ctx, cfg)
        zs = ctx.zeroshot_embeddings()
        self.table = nn.Parameter(zs.clone() + cfg.table_noise * torch.randn_like(zs))

    def _t(self) -> Tensor:
        return F.normalize(self.table, dim=-1)

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        ce = cross_entropy(self.logit_scale * feats.to(self.table.device) @ self._t().T, labels)
        return {"ce": ce, "total": ce}

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        t = self._t()
        return {"high": t, "low": t}


EXTRA = ClassTable.name
METHODS = available_methods()  # at collection: every method the package ships


@pytest.fixture()
def table_method():
    """``contract_table`` registered for one test, forgotten afterwards."""
    register(ClassTable)
    try:
        yield EXTRA
    finally:
        unregister(EXTRA)
    assert EXTRA not in available_methods()


@pytest.fixture(params=[*METHODS, EXTRA])
def method_name(request) -> str:
    """Every shipped method, and the one defined above (registered while the test runs)."""
    if request.param == EXTRA:
        request.getfixturevalue("table_method")
    return request.param


# --------------------------------------------------------------------------------------------
# helpers


def _build(name: str, task, backbone, tmp_path) -> Method:
    cfg = RunConfig(
        task=str(task.folder), out=str(tmp_path / "unused"), method=name, device="cpu", show_progress=False
    )
    return build_method(cfg, task, backbone)


def _batch(backbone, n: int = 6, seed: int = 3) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, backbone.output_dim, generator=g), dim=-1)
    return feats, torch.arange(n) % 3


def _graph_leaves(root: Tensor) -> list[Tensor]:
    """Every leaf tensor the autograd graph of ``root`` accumulates a gradient into."""
    leaves: list[Tensor] = []
    seen: list = []  # the nodes themselves (kept alive, so that their ids are not reused)
    ids: set[int] = set()
    stack = [root.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in ids:
            continue
        ids.add(id(fn))
        seen.append(fn)
        var = getattr(fn, "variable", None)  # AccumulateGrad: the leaf it writes .grad into
        if var is not None:
            leaves.append(var)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return leaves


def _names(tensors, named: dict[str, Tensor]) -> list[str]:
    by_id = {id(t): n for n, t in named.items()}
    return sorted(by_id.get(id(t), f"<unnamed {tuple(t.shape)}>") for t in tensors)


# --------------------------------------------------------------------------------------------
# the battery


def test_battery_covers_the_shipped_methods():
    assert {"zeroshot", "zeroshot_desc", "coop", "cocoop", "kgcoop", "biomedcoop", "kmat"} <= set(METHODS)


def test_builds_with_its_own_config_and_parameters(method_name, loaded_toy_task, backbone, tmp_path):
    cls = get_method(method_name)
    m = _build(method_name, loaded_toy_task, backbone, tmp_path)
    assert isinstance(m, cls) and m.name == method_name
    assert isinstance(m.cfg, cls.Config)
    learnable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert set(m.learnable_state()) == learnable
    backbone_params = {id(p) for p in backbone.model.parameters()}
    assert not any(p.requires_grad for p in backbone.model.parameters()), "the backbone must stay frozen"
    shared = [n for n, p in m.named_parameters() if id(p) in backbone_params]
    assert not shared, f"{method_name}: backbone weights are parameters of the method: {shared}"
    grad_buffers = [n for n, b in m.named_buffers() if b.requires_grad]
    assert not grad_buffers, f"{method_name}: buffers that require grad: {grad_buffers}"
    if cls.trains:
        assert learnable, f"{method_name} trains but has no learnable parameter"
    else:
        assert not learnable, f"{method_name} does not train but has learnable parameters {learnable}"


def test_loss_is_finite_and_its_gradients_reach_exactly_the_learnable_parameters(
    method_name, loaded_toy_task, backbone, tmp_path
):
    m = _build(method_name, loaded_toy_task, backbone, tmp_path)
    feats, labels = _batch(backbone)
    if not m.trains:  # nothing to train: the engine must never call its loss, whatever the epochs
        calls: list[int] = []
        m.loss = lambda *a, **k: calls.append(1)  # type: ignore[method-assign]
        recipe = dataclasses.replace(m.cfg, epochs=3)
        assert train(m, lambda e: (feats, labels), recipe, seed=1, show_progress=False) == []
        assert not calls, f"{method_name}: the engine called the loss of a method that does not train"
        return
    with m.backbone.text_dropout(m.text_dropout):  # as the engine calls it
        terms = m.loss(feats, labels)
    assert isinstance(terms, dict) and "total" in terms, f"{method_name}: loss returned {type(terms)}"
    for k, v in terms.items():  # the engine averages every term into the history with float()
        assert isinstance(v, Tensor) and v.dim() == 0, f"{method_name}: term {k!r} is not a scalar tensor"
        assert torch.isfinite(v), f"{method_name}: term {k!r} = {v}"
    total = terms["total"]
    assert total.requires_grad, f"{method_name}: 'total' does not depend on any learnable parameter"

    own = {n: p for n, p in m.named_parameters() if p.requires_grad}
    reached = _graph_leaves(total)
    outside = [t for t in reached if not any(t is p for p in own.values())]
    assert not outside, (
        f"{method_name}: the loss's graph reaches tensors that are not the method's learnable parameters: "
        f"{_names(outside, dict(backbone.model.named_parameters()))}"
    )
    unused = [n for n, p in own.items() if not any(t is p for t in reached)]
    assert not unused, f"{method_name}: learnable parameters the loss does not use: {unused}"

    for p in m.parameters():
        p.grad = None
    total.backward()
    for n, p in own.items():
        assert p.grad is not None, f"{method_name}: no gradient for {n}"
        assert torch.isfinite(p.grad).all(), f"{method_name}: non-finite gradient for {n}"
        assert p.grad.abs().sum() > 0, f"{method_name}: gradient of {n} is all zero"
    with_grad = [n for n, p in backbone.model.named_parameters() if p.grad is not None]
    assert not with_grad, f"{method_name}: backbone parameters received gradients: {with_grad[:5]}"


def test_class_embeddings_are_unit_rows_per_role(method_name, loaded_toy_task, backbone, tmp_path):
    m = _build(method_name, loaded_toy_task, backbone, tmp_path)
    emb = m.class_embeddings()
    assert isinstance(emb, dict) and set(emb) == {"high", "low"}, f"{method_name}: roles {list(emb)}"
    c, d = loaded_toy_task.num_classes, backbone.output_dim
    for role, t in emb.items():
        assert tuple(t.shape) == (c, d), f"{method_name}[{role}]: shape {tuple(t.shape)}, want {(c, d)}"
        assert torch.isfinite(t).all()
        norms = t.float().norm(dim=-1)
        assert torch.allclose(norms, torch.ones(c), atol=1e-5), f"{method_name}[{role}]: row norms {norms}"


def test_predict_logits_are_the_scaled_cosines_of_the_class_embeddings(
    method_name, loaded_toy_task, backbone, tmp_path
):
    m = _build(method_name, loaded_toy_task, backbone, tmp_path)
    feats, _ = _batch(backbone, n=5, seed=7)
    c = loaded_toy_task.num_classes
    for role in ("high", "low"):
        z = m.predict_logits(feats, role)
        assert tuple(z.shape) == (5, c), f"{method_name}[{role}]: logits shape {tuple(z.shape)}"
        assert torch.isfinite(z).all()
        assert torch.allclose(m.predict_logits(feats, role, batch_size=2), z, atol=1e-5), (
            f"{method_name}[{role}]: logits depend on the evaluation batch size"
        )
        with torch.no_grad():
            assert torch.allclose(m.logits(feats, role), z, atol=1e-5), (
                f"{method_name}[{role}]: predict_logits differs from the training-time logits"
            )
        if m.per_image_prompts or m.head():
            continue  # it classifies with more than fixed class embeddings (deployed: its head)
        # kmat predict rebuilds these logits from class_embeddings.safetensors and the configured scale
        scale = m.cfg.logit_scale or backbone.logit_scale
        assert m.logit_scale == pytest.approx(scale), f"{method_name}: logit scale is not the configured one"
        t = m.class_embeddings()[role]
        expected = scale * feats @ t.T
        assert torch.allclose(z, expected, rtol=1e-5, atol=1e-5), (
            f"{method_name}[{role}]: predict_logits != logit_scale * feats @ t.T"
        )
        assert torch.equal(z.argmax(dim=1), expected.argmax(dim=1))


def test_deployed_logits_from_the_saved_tensors_equal_the_trained_methods(
    method_name, loaded_toy_task, backbone, tmp_path
):
    """What ``kmat predict`` and ``kmat.load_run`` classify with: the class embeddings and the
    method's head alone (no task), after every learned tensor has been moved off its start."""
    m = _build(method_name, loaded_toy_task, backbone, tmp_path)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g).to(p))
    dep = Deployment(
        backbone=backbone,
        classnames=list(loaded_toy_task.classnames),
        modality_names=[loaded_toy_task.high.display_name, loaded_toy_task.low.display_name],
        config=resolve_config(type(m).Config, m.cfg.to_dict()),
        embeddings={k: v.detach().clone() for k, v in m.class_embeddings().items()},
        head={k: v.detach().cpu().clone() for k, v in m.head().items()},
        logit_scale=m.cfg.logit_scale or backbone.logit_scale,
    )
    feats, _ = _batch(backbone, n=5, seed=7)
    for role in ("high", "low"):
        with torch.no_grad():
            deployed = type(m).deployed_logits(dep, feats, role).cpu()
        assert torch.allclose(deployed, m.predict_logits(feats, role), rtol=1e-5, atol=1e-5), (
            f"{method_name}[{role}]: the logits deployed from the saved tensors differ from the method's"
        )


def test_head_tensors_are_named_parameters_or_buffers(method_name, loaded_toy_task, backbone, tmp_path):
    """A run's head is restored by name (Method.load_head): every key must be one of the method's
    parameters or buffers, with the same shape."""
    m = _build(method_name, loaded_toy_task, backbone, tmp_path)
    own = {**dict(m.named_parameters()), **dict(m.named_buffers())}
    for k, v in m.head().items():
        assert k in own, f"{method_name}: head tensor {k!r} is not a parameter or buffer"
        assert own[k].shape == v.shape, f"{method_name}: head tensor {k!r} has another shape"


def test_checkpoint_round_trip_gives_the_run_metrics(
    method_name, toy_task_master, tiny_model_dir, backbone, tmp_path, monkeypatch
):
    cfg = toy_run_config(toy_task_master, tmp_path / "r", tiny_model_dir, method=method_name)
    run(cfg, backbone=backbone)
    layout = RunLayout.of(cfg.out)
    on_disk = json.loads(layout.result.read_text())
    state, _ = load_checkpoint(layout.checkpoint)

    evaluated: list[Method] = []  # the method evaluate_checkpoint rebuilds, for a closer look
    real_evaluate = runner_mod.evaluate
    monkeypatch.setattr(
        runner_mod, "evaluate", lambda m, *a, **k: evaluated.append(m) or real_evaluate(m, *a, **k)
    )
    again = evaluate_checkpoint(layout.checkpoint, backbone=backbone)
    assert again == on_disk["metrics"]

    # metrics of a tiny random model hardly move: also check what was reloaded
    (rebuilt,) = evaluated
    reloaded = rebuilt.learnable_state()
    assert set(reloaded) == set(state)
    for k, v in state.items():
        assert torch.equal(reloaded[k], v), f"{method_name}: {k} not restored from the checkpoint"
    saved = load_file(str(layout.embeddings))
    for role, t in rebuilt.class_embeddings().items():
        assert torch.allclose(t.float().cpu(), saved[role], atol=1e-6), f"{method_name}[{role}] embeddings"
    if rebuilt.trains:  # the checkpoint holds trained values, not the initial ones
        fresh = _build(method_name, rebuilt.ctx.task, backbone, tmp_path).learnable_state()
        assert any(not torch.equal(fresh[k], v) for k, v in state.items()), (
            f"{method_name}: one epoch of training changed no parameter"
        )


# --------------------------------------------------------------------------------------------
# the method defined here, through the command line


def test_extra_method_trains_through_kmat_train(
    table_method, toy_task_master, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    code = main(
        train_argv(
            tiny_model_dir, toy_task_master, out, "-o", "table_noise=0.125", method=table_method, epochs=1
        )
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == table_method
    assert result["config"]["options"]["table_noise"] == 0.125
    assert result["config"]["method_config"]["table_noise"] == 0.125
    assert result["config"]["method_config"]["epochs"] == 1
    assert len(result["history"]) == 1 and "ce" in result["history"][0]
    state, saved = load_checkpoint(out / "checkpoint.safetensors")
    assert set(state) == {"table"} and saved["method"] == table_method


def test_extra_method_lists_its_options(table_method, capsys):
    assert main(["train", "--method", table_method, "--help-options"]) == 0
    text = capsys.readouterr().out
    assert "table_noise" in text and "std of the noise added to the zero-shot start" in text
    assert "TableConfig" in text


def test_extra_method_goes_into_the_table2_grid(
    table_method, toy_task_master, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "rep"
    code = main(reproduce_argv(tiny_model_dir, toy_task_master, out, methods=[table_method, "zeroshot"]))
    assert code == 0, capsys.readouterr().err
    table = (out / "table2.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Dataset"))
    assert table_method in header and "BiomedCLIP" in header, table
    assert list((out / "runs" / "toy" / table_method).glob("*/seed1/result.json"))
