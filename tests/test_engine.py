import json
import math

import pytest
import torch

from kmat.engine import lr_at
from kmat.methods.coop import CoOpConfig
from kmat.run.config import RunConfig
from kmat.run.layout import CHECKPOINT_FILE, RESULT_FILE
from kmat.run.runner import evaluate_checkpoint, run


def _cfg(task, out, **opts):
    return RunConfig(
        task=str(task),
        out=str(out),
        backbone="unused",
        shots=2,
        seed=1,
        device="cpu",
        show_progress=False,
        options={"epochs": 2, **opts},
    )


def test_recipe_warmup_then_cosine():
    r = CoOpConfig(epochs=5, batch_size=4, lr=0.002)
    assert lr_at(r, 0) == 1e-5
    assert lr_at(r, 1) == pytest.approx(0.002)
    # Dassl: CosineAnnealingLR(T_max = E) behind one warm-up epoch: the denominator is E, not E - w
    for e in range(1, 5):
        assert lr_at(r, e) == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 5)), rel=1e-12)
    assert lr_at(r, 4) > 0.002 * 0.05  # never near 0: 0.5 * (1 + cos(0.6 pi)) = 0.345


def test_cocoop_schedule_matches_the_official_scheduler():
    """CoCoOp's 10 epochs, measured on the official (Dassl) scheduler: lr / base after warm-up."""
    from kmat.methods.cocoop import CoCoOpConfig

    r = CoCoOpConfig()
    assert (r.epochs, r.lr, r.warmup_epochs) == (10, 0.001, 1)
    want = [1e-5] + [0.001 * 0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(9)]
    assert [lr_at(r, e) for e in range(10)] == pytest.approx(want, rel=1e-12)
    assert lr_at(r, 9) == pytest.approx(0.001 * 0.0955, rel=1e-2)  # the last epoch: 9.5 % of the base lr


def test_only_prompt_parameters_change(backbone, toy_task_master, tmp_path):
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    result = run(_cfg(toy_task_master, tmp_path / "r"), backbone=backbone)
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    from kmat.engine import load_checkpoint

    state, _ = load_checkpoint(tmp_path / "r" / CHECKPOINT_FILE)
    assert set(state) == {"prompt.shared", "prompt.modality_ctx", "prompt.class_ctx"}
    torch.manual_seed(1)  # same init as the run: the learned prompts moved away from it
    init_shared = torch.randn(4, backbone.embed_width) * 0.02
    assert not torch.allclose(state["prompt.shared"], init_shared)
    assert result["history"][-1]["lr"] == pytest.approx(0.0025)


def test_same_seed_same_numbers(backbone, toy_task_master, tmp_path):
    a = run(_cfg(toy_task_master, tmp_path / "a"), backbone=backbone)
    b = run(_cfg(toy_task_master, tmp_path / "b"), backbone=backbone)
    assert json.dumps(a["metrics"]) == json.dumps(b["metrics"])
    assert [h["total"] for h in a["history"]] == [h["total"] for h in b["history"]]
    ra = json.loads((tmp_path / "a" / RESULT_FILE).read_text())
    assert json.dumps(ra["metrics"], sort_keys=True) == json.dumps(b["metrics"], sort_keys=True)


def test_checkpoint_reloads_to_the_same_metrics(backbone, toy_task_master, tmp_path):
    res = run(_cfg(toy_task_master, tmp_path / "r", epochs=3), backbone=backbone)
    again = evaluate_checkpoint(tmp_path / "r" / CHECKPOINT_FILE, backbone=backbone)
    assert again == res["metrics"]


def test_result_file_has_the_contract_keys(backbone, toy_task_master, tmp_path):
    res = run(_cfg(toy_task_master, tmp_path / "r", epochs=1), backbone=backbone)
    on_disk = json.loads((tmp_path / "r" / RESULT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(res))
    for k in (
        "method",
        "task",
        "shots",
        "seed",
        "backbone",
        "config",
        "metrics",
        "per_class",
        "timing",
        "versions",
    ):
        assert k in on_disk
    for role in ("high", "low", "h"):
        assert set(on_disk["metrics"][role]) == {"acc", "macro_f1"}
        assert all(0 <= v <= 100 for v in on_disk["metrics"][role].values())
    assert set(on_disk["per_class"]["low"]) == {"normal", "benign", "malignant"}
    assert (tmp_path / "r" / "fewshot_train.csv").is_file()


def test_seed_everything_asks_cuda_for_deterministic_kernels(monkeypatch):
    """On CUDA the run asks for deterministic kernels; on a CPU it changes no global torch flag."""
    import os

    import torch

    from kmat.run.runner import seed_everything

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "unset-me")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")  # restored to its original state afterwards
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(3, torch.device("cpu"))
        assert (
            not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        )
        seed_everything(3, torch.device("cuda"))
        assert (
            torch.are_deterministic_algorithms_enabled()
            and torch.is_deterministic_algorithms_warn_only_enabled()
        )
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags


def test_the_loop_calls_the_methods_fit_and_backward_hooks(backbone, toy_task_master, tmp_path):
    """``fit`` sees the shots and the high-end validation split once before training; ``backward``
    decides the gradient (here: none, so nothing may move); ``fit``'s answer is recorded."""
    import dataclasses

    from kmat.engine import load_checkpoint
    from kmat.methods import register, unregister
    from kmat.methods.coop import CoOp

    seen: dict = {}

    class Frozen(CoOp):
        name = "test_frozen_grad"

        def fit(self, train, val):
            feats, labels = train(0)
            seen["train"], seen["val"] = (len(feats), len(labels)), val
            return {"fitted_on": len(labels)}

        def backward(self, terms):
            seen["steps"] = seen.get("steps", 0) + 1  # no gradient at all: SGD leaves the prompts

    register(Frozen)
    try:
        cfg = dataclasses.replace(_cfg(toy_task_master, tmp_path / "r"), method="test_frozen_grad", shots=1)
        res = run(cfg, backbone=backbone)
    finally:
        unregister("test_frozen_grad")
    assert seen["train"] == (3, 3) and seen["steps"] >= 2
    # the hooks select on the few-shot validation subset (min(K, 4) = 1 per class, fewshot_val.csv),
    # not on the whole high-end validation split
    import csv

    from kmat.data.task import load_task

    subset = list(csv.DictReader(open(tmp_path / "r" / "fewshot_val.csv")))
    classes = res["config"]["classes"]
    val_feats, val_labels = seen["val"]
    assert len(subset) == len(val_feats) == 3 < len(load_task(toy_task_master).high.split("val"))
    assert val_labels.tolist() == [classes.index(r["label"]) for r in subset]
    assert res["fit"] == {"fitted_on": 3}
    cfg0 = dataclasses.replace(_cfg(toy_task_master, tmp_path / "z", epochs=0), method="coop", shots=1)
    start = run(cfg0, backbone=backbone)
    state, _ = load_checkpoint(tmp_path / "r" / CHECKPOINT_FILE)
    state0, _ = load_checkpoint(tmp_path / "z" / CHECKPOINT_FILE)
    assert state.keys() == state0.keys() and all(torch.equal(state[k], state0[k]) for k in state), (
        "a step without gradient moved the prompts"
    )
    assert start["metrics"] == res["metrics"]
