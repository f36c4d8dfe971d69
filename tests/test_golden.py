"""Golden numbers: every shipped method's loss history and metrics on a short seeded run.

A refactor must not move them; a deliberate change of behaviour regenerates
``tests/golden/methods.json`` with ``python tests/golden/make_golden.py`` and says why in the
commit message (see that script). Losses are compared with a tolerance for float noise across
machines (rel 1e-4, abs 1e-5); metrics are percentages of counts (rounded to 4 decimals in
result.json) and must agree to 1e-6.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pytest

from kmat.methods import available_methods
from kmat.run.config import RunConfig
from kmat.run.experiments import method_options
from kmat.run.runner import run

GOLDEN = Path(__file__).parent / "golden" / "methods.json"
WRITE = os.environ.get("KMAT_GOLDEN_WRITE") == "1"  # set by tests/golden/make_golden.py
REGENERATE = "python tests/golden/make_golden.py"

SETUP = {"shots": 4, "seed": 1, "options": {"epochs": 3}, "backbone": "demo"}  # every method's run
# The demo backbone (pre-trained, shipped) and not the tiny random model: its prompts are far from
# chance, so a changed template, initialisation, lr or term moves the numbers; 3 epochs so that the
# last recorded epoch runs at the base lr (epoch 0 is the warm-up).
LOSS_REL, LOSS_ABS = 1e-4, 1e-5
LR_REL = 1e-9
METRIC_ABS = 1e-6
EXACT = ("epoch", "steps")  # bookkeeping of the history, compared exactly
SKIP = ("seconds",)  # wall time: not a number of the method

METHODS = available_methods()


def record(result: dict) -> dict:
    """What the golden file keeps of a run: its history (but wall time) and its metrics."""
    history = [{k: v for k, v in h.items() if k not in SKIP} for h in result["history"]]
    return {"history": history, "metrics": result["metrics"]}


def _num(x: object) -> str:
    return repr(x)


def differences(method: str, got: dict, want: dict) -> list[str]:
    """One readable line per number of ``got`` that differs from ``want`` beyond its tolerance."""
    out: list[str] = []
    gh, wh = got["history"], want["history"]
    if len(gh) != len(wh):
        out.append(f"{method}: history has {len(gh)} epoch(s), golden {len(wh)}")
    for e, (g, w) in enumerate(zip(gh, wh, strict=False)):
        where = f"{method}: history[epoch {e}]"
        for k in sorted(set(g) ^ set(w)):
            side = "only in this run" if k in g else "only in the golden file"
            out.append(f"{where}: term {k!r} {side} (got {g.get(k)!r}, golden {w.get(k)!r})")
        for k in sorted(set(g) & set(w)):
            a, b = g[k], w[k]
            if k in EXACT:
                ok, tol = a == b, "exact"
            elif k == "lr":
                ok, tol = math.isclose(a, b, rel_tol=LR_REL, abs_tol=0.0), f"rel {LR_REL:g}"
            else:
                ok = math.isclose(a, b, rel_tol=LOSS_REL, abs_tol=LOSS_ABS)
                tol = f"rel {LOSS_REL:g}, abs {LOSS_ABS:g}"
            if not ok:
                out.append(f"{where}.{k}: got {_num(a)}, golden {_num(b)} (tolerance {tol})")
    gm, wm = got["metrics"], want["metrics"]
    for role in sorted(set(gm) | set(wm)):
        for k in sorted(set(gm.get(role, {})) | set(wm.get(role, {}))):
            a, b = gm.get(role, {}).get(k), wm.get(role, {}).get(k)
            if a is None or b is None or abs(a - b) > METRIC_ABS:
                out.append(
                    f"{method}: metrics.{role}.{k}: got {_num(a)}, golden {_num(b)} (tolerance {METRIC_ABS:g})"
                )
    return out


def weights_digest(backbone) -> str:
    """sha256 of the test model's weights (the shipped demo backbone)."""
    h = hashlib.sha256()
    for k, v in sorted(backbone.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def demo_backbone():
    from kmat.backbone import load_backbone

    return load_backbone("demo", device="cpu")


@pytest.fixture(scope="module")
def golden(demo_backbone):
    """The golden file; in write mode, the records of this session, saved at the end."""
    old = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else None
    model = weights_digest(demo_backbone)
    if not WRITE:
        if old is None:
            pytest.fail(f"{GOLDEN} is missing: generate it with `{REGENERATE}`")
        if old.get("setup") != SETUP:
            pytest.fail(
                f"{GOLDEN.name} was made with setup {old.get('setup')}, the test runs {SETUP}: "
                f"regenerate it with `{REGENERATE}`"
            )
        if old.get("model") != model:
            pytest.fail(
                f"the test model's weights (sha256 {model}) are not those the golden numbers were made "
                f"with ({old.get('model')}): the shipped demo backbone changed; "
                f"regenerate {GOLDEN.name} with `{REGENERATE}`"
            )
        yield old
        return
    keep = old["methods"] if old and old.get("setup") == SETUP and old.get("model") == model else {}
    data = {
        "about": f"golden numbers of tests/test_golden.py; regenerate with `{REGENERATE}` "
        "and give the reason in the commit message",
        "setup": SETUP,
        "model": model,
        "methods": {m: r for m, r in keep.items() if m in METHODS},
    }
    yield data
    GOLDEN.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("method", METHODS)
def test_golden_numbers(method, golden, toy_task_master, demo_backbone, tmp_path):
    cfg = RunConfig(
        task=str(toy_task_master),
        out=str(tmp_path / method),
        method=method,
        backbone=SETUP["backbone"],
        shots=SETUP["shots"],
        seed=SETUP["seed"],
        device="cpu",
        show_progress=False,
        options=method_options(method, SETUP["options"]),  # epochs where the method has them
    )
    got = record(run(cfg, backbone=demo_backbone))
    if WRITE:
        golden["methods"][method] = got
        return
    if method not in golden["methods"]:
        pytest.fail(f"no golden numbers for method {method!r}: add them with `{REGENERATE} -k {method}`")
    diff = differences(method, got, golden["methods"][method])
    if diff:
        pytest.fail(
            f"golden numbers of {method!r} changed ({len(diff)} difference(s)):\n  "
            + "\n  ".join(diff)
            + f"\nIf this change of behaviour is intended, regenerate {GOLDEN.name} with `{REGENERATE}` "
            "and say why in the commit message.",
            pytrace=False,
        )


def test_golden_file_has_no_stale_methods(golden):
    stale = sorted(set(golden["methods"]) - set(METHODS))
    assert not stale, f"{GOLDEN.name} has numbers of methods that no longer exist: {stale}; regenerate it"


def test_differences_name_the_method_the_key_and_both_values():
    want = {
        "history": [{"epoch": 0, "lr": 1e-5, "steps": 1, "ce": 1.0, "total": 1.0}],
        "metrics": {"high": {"acc": 50.0, "macro_f1": 40.0}},
    }
    same = json.loads(json.dumps(want))
    same["history"][0]["ce"] = 1.00005  # within rel 1e-4
    assert differences("coop", same, want) == []
    got = json.loads(json.dumps(want))
    got["history"][0]["ce"] = 1.01
    got["history"][0]["kd"] = 0.5
    got["metrics"]["high"]["acc"] = 50.0001
    lines = differences("coop", got, want)
    assert len(lines) == 3, lines
    assert "coop: history[epoch 0].ce: got 1.01, golden 1.0" in lines[1]
    assert "term 'kd' only in this run" in lines[0]
    assert lines[2].startswith("coop: metrics.high.acc: got 50.0001, golden 50.0")
