"""K-MaT's FGW diagnostics reach result.json and a figure; collapsed runs are named; validation
metrics are recorded."""

import json

from kmat.cli import main
from kmat.report.results import collapsed_runs, collect, predicted_classes


def test_kmat_history_records_fgw_diagnostics_and_val(tiny_model_dir, toy_task_master, tmp_path):
    out = tmp_path / "r"
    args = ["train", "--task", str(toy_task_master), "--backbone", f"local-dir:{tiny_model_dir}"]
    assert main([*args, "--out", str(out), "--epochs", "2", "--quiet", "--device", "cpu"]) == 0
    res = json.loads((out / "result.json").read_text())
    for rec in res["history"]:
        for key in ("fgw", "fgw_feature", "fgw_structure", "fgw_plan_diag", "fgw_plan_entropy", "dist_hl"):
            assert key in rec, key
        assert 0.0 <= rec["fgw_plan_diag"] <= 1.0 + 1e-6
        alpha = res["config"]["method_config"]["alpha"]
        # the per-epoch means keep the identity L_FGW = (1 - alpha) feature + alpha structure
        assert abs(rec["fgw"] - ((1 - alpha) * rec["fgw_feature"] + alpha * rec["fgw_structure"])) < 1e-5
    assert set(res["val"]) <= {"high", "low"} and "acc" in next(iter(res["val"].values()), {"acc": 0})
    assert res["config"]["published_defaults"] is None  # the toy task's dataset has none


def test_predicted_classes_and_collapse():
    assert predicted_classes([[3, 0, 0], [2, 0, 0], [4, 0, 0]]) == 1
    assert predicted_classes([[3, 1, 0], [2, 0, 0], [0, 0, 4]]) == 3
    assert predicted_classes(None) is None
    rows = [
        {"task": "t", "label": "kmat", "setting": "16shot", "seed": 1, "low_predicted_classes": 1},
        {"task": "t", "label": "kmat", "setting": "16shot", "seed": 2, "low_predicted_classes": 3},
    ]
    assert collapsed_runs(rows) == ["t/kmat/16shot seed 1"]


def test_fgw_figure_from_run_histories(tmp_path):
    from kmat.report.plots import fgw_diagnostics

    for seed, diag in ((1, [0.4, 0.9, 0.99]), (2, [0.34, 0.35, 0.36])):
        d = tmp_path / "runs" / "t" / "kmat" / "16shot" / f"seed{seed}"
        d.mkdir(parents=True)
        hist = [{"epoch": e, "fgw_plan_diag": v, "dist_hl": 1 - v} for e, v in enumerate(diag)]
        m = {"acc": 50.0, "macro_f1": 40.0}
        res = {
            "method": "kmat",
            "task": "t",
            "seed": seed,
            "shots": 16,
            "history": hist,
            "metrics": {"high": m, "low": m, "h": m},
            "per_class": {"low": {"a": 1.0, "b": 2.0, "c": 3.0}},
            "confusion": {"low": [[1, 0, 0], [1, 0, 0], [1, 0, 0]]},
        }
        (d / "result.json").write_text(json.dumps(res))
    rows = collect(tmp_path)
    assert [r["low_predicted_classes"] for r in rows] == [1, 1]
    path = fgw_diagnostics(rows, "t", tmp_path / "fgw.png")
    assert path is not None and path.stat().st_size > 5000
    assert fgw_diagnostics(rows, "other", tmp_path / "none.png") is None
