"""kmat reproduce / kmat table: grids, resumption, failures, and tables from result files."""

import json

import pytest

import kmat.run.grid as reproduce_mod
from cli_helpers import reproduce_argv
from kmat.cli import main
from kmat.report.results import aggregate, collect, table2_markdown
from kmat.run.experiments import ABLATION_ROWS

SETTING = "16shot-epochs=1"  # the run folders of a 16-shot grid with --epochs 1


def test_table2_grid_runs_skips_and_rebuilds(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(
        reproduce_argv(tiny_model_dir, toy_task_master, out, methods=["zeroshot", "kmat"], seeds=[1, 2])
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "BiomedCLIP" in printed and "K-MaT" in printed
    for m in ("zeroshot", "kmat"):
        for s in (1, 2):
            assert (out / "runs" / "toy" / m / SETTING / f"seed{s}" / "result.json").is_file()
    for f in ("table2.md", "results.csv"):
        assert (out / f).is_file()
    table = (out / "table2.md").read_text()
    assert len((out / "results.csv").read_text().strip().splitlines()) == 5
    mtime = (out / "runs" / "toy" / "kmat" / SETTING / "seed1" / "result.json").stat().st_mtime_ns
    code = main(
        reproduce_argv(tiny_model_dir, toy_task_master, out, methods=["zeroshot", "kmat"], seeds=[1, 2])
    )
    assert code == 0 and "4 already done" in capsys.readouterr().out
    assert (out / "runs" / "toy" / "kmat" / SETTING / "seed1" / "result.json").stat().st_mtime_ns == mtime
    assert (out / "table2.md").read_text() == table
    assert main(["table", str(out), "--table", "2", "--no-figures"]) == 0
    assert (out / "table2.md").read_text() == table
    capsys.readouterr()
    code = main(
        reproduce_argv(
            tiny_model_dir,
            toy_task_master,
            out,
            "--precision",
            "bf16",
            "--dry-run",
            methods=["zeroshot", "kmat"],
            seeds=[1, 2],
        )
    )
    assert (
        code == 0 and f"pending  toy/kmat/{SETTING}/seed1" in capsys.readouterr().out
    )  # fp32 runs do not count for bf16


def test_interrupted_grid_resumes(tiny_model_dir, toy_task_master, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rep"
    real_run = reproduce_mod.run
    calls = {"n": 0}

    def dying_run(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user kills the grid during its second run
        return real_run(*a, **k)

    monkeypatch.setattr(reproduce_mod, "run", dying_run)
    assert main(reproduce_argv(tiny_model_dir, toy_task_master, out, methods=["kmat"], seeds=[1, 2])) == 130
    assert (out / f"runs/toy/kmat/{SETTING}/seed1/result.json").is_file()
    assert not (out / f"runs/toy/kmat/{SETTING}/seed2/result.json").exists()
    monkeypatch.setattr(reproduce_mod, "run", real_run)
    assert main(reproduce_argv(tiny_model_dir, toy_task_master, out, methods=["kmat"], seeds=[1, 2])) == 0
    text = capsys.readouterr().out
    assert "1 run(s) finished, 1 already done" in text
    assert (out / f"runs/toy/kmat/{SETTING}/seed2/result.json").is_file()


def test_failed_run_is_recorded_and_the_grid_goes_on(
    tiny_model_dir, toy_task_master, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "rep"
    real_run = reproduce_mod.run

    def flaky(cfg, **k):
        if cfg.seed == 1:
            raise ValueError("boom on seed 1")
        return real_run(cfg, **k)

    monkeypatch.setattr(reproduce_mod, "run", flaky)
    code = main(reproduce_argv(tiny_model_dir, toy_task_master, out, methods=["kmat"], seeds=[1, 2]))
    assert code == 1
    err = json.loads((out / f"runs/toy/kmat/{SETTING}/seed1/error.json").read_text())
    assert "boom on seed 1" in err["error"] and "Traceback" in err["traceback"]
    assert (out / f"runs/toy/kmat/{SETTING}/seed2/result.json").is_file()
    assert "boom on seed 1" in capsys.readouterr().err


def test_dry_run_lists_without_running(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "rep"
    assert (
        main(reproduce_argv(tiny_model_dir, toy_task_master, out, "--dry-run", table="3", seeds=[1, 2])) == 0
    )
    text = capsys.readouterr().out
    assert sum(1 for line in text.splitlines() if "] pending" in line) == 16
    assert "16 pending, 0 done" in text and not (out / "runs").exists()


def test_table3_prints_eight_rows_with_relative_improvement(
    tiny_model_dir, toy_task_master, tmp_path, capsys
):
    out = tmp_path / "rep"
    code = main(reproduce_argv(tiny_model_dir, toy_task_master, out, "--compare-paper", table="3"))
    assert code == 0
    table = (out / "table3.md").read_text()
    ours = table.split("Published")[0]
    rows = [line for line in ours.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 8 and "Rel. Impr." in table
    assert rows[0].rstrip(" |").endswith("0.00 | 0.00")
    assert "| 8 | ✓ | ✓ | ✓ | ✓ | 54.80 | 49.34 | 39.25 | 29.92 | 44.13 | 36.23 | 10.10 | 13.75 |" in table
    assert {lab for lab, *_ in ABLATION_ROWS} == {p.name for p in (out / "runs" / "toy").iterdir()}


def _fake_result(out, task, label, seed, hi, lo, classes=("a", "b")):
    d = out / "runs" / task / label / "16shot" / f"seed{seed}"
    d.mkdir(parents=True)
    h = {k: 2 * hi[k] * lo[k] / (hi[k] + lo[k]) for k in hi}
    res = {
        "method": label,
        "task": task,
        "seed": seed,
        "shots": 16,
        "backbone": "x",
        "metrics": {"high": hi, "low": lo, "h": h},
        "per_class": {"low": {c: lo["acc"] for c in classes}},
    }
    (d / "result.json").write_text(json.dumps(res))


def test_tables_are_computed_from_result_files(tmp_path):
    out = tmp_path
    _fake_result(out, "skin1", "coop", 1, {"acc": 60.0, "macro_f1": 50.0}, {"acc": 20.0, "macro_f1": 10.0})
    _fake_result(out, "skin1", "coop", 2, {"acc": 70.0, "macro_f1": 40.0}, {"acc": 40.0, "macro_f1": 30.0})
    _fake_result(out, "skin1", "kmat", 1, {"acc": 50.0, "macro_f1": 46.0}, {"acc": 50.0, "macro_f1": 45.0})
    _fake_result(out, "breast", "coop", 1, {"acc": 80.0, "macro_f1": 80.0}, {"acc": 20.0, "macro_f1": 20.0})
    _fake_result(out, "breast", "kmat", 1, {"acc": 70.0, "macro_f1": 60.0}, {"acc": 40.0, "macro_f1": 30.0})
    agg = aggregate(collect(out))
    assert agg[("skin1", "coop")]["high_acc"][:2] == pytest.approx((65.0, 7.0710678))
    # H is computed per seed, then averaged: mean(2*60*20/80, 2*70*40/110) = mean(30, 50.909)
    assert agg[("skin1", "coop")]["h_acc"][0] == pytest.approx((30.0 + 5600 / 110) / 2)
    table = table2_markdown(agg)
    lines = table.splitlines()
    assert lines[0] == "| Dataset | | CoOp | K-MaT |"
    assert lines[2] == "| Skin I | Hi | **65.0** (45.0) | 50.0 (**46.0**) |"
    assert lines[5].startswith("| Breast | Hi | **80.0** (**80.0**) | 70.0 (60.0) |")
    avg_hi = [line for line in lines if line.startswith("| Avg. | Hi")][0]
    assert avg_hi == "| Avg. | Hi | **72.5** (**62.5**) | 60.0 (53.0) |"


def test_figures_and_paper_table(tmp_path):
    from kmat.report.plots import make_figures
    from kmat.report.results import paper_table2_markdown

    _fake_result(
        tmp_path, "skin1", "coop", 1, {"acc": 60.0, "macro_f1": 50.0}, {"acc": 20.0, "macro_f1": 10.0}
    )
    _fake_result(
        tmp_path, "skin1", "kmat", 1, {"acc": 50.0, "macro_f1": 46.0}, {"acc": 50.0, "macro_f1": 45.0}
    )
    rows = collect(tmp_path)
    paths = make_figures(tmp_path, aggregate(rows), rows)
    assert [p.name for p in paths] == ["per_class_low_skin1.png"]
    assert paths[0].stat().st_size > 1000
    paper = paper_table2_markdown(["skin1", "skin2", "chest", "breast"])
    assert (
        "| Skin I | Hi | 34.6 (24.2) | 55.5 (42.3) | 56.6 (41.6) | 44.6 (32.0) | **58.3** (39.3) | 56.8 (**43.1**) |"
        in paper
    )
    assert (
        "|  | H | 31.7 (24.1) | 38.3 (30.5) | 38.0 (30.0) | 36.2 (31.1) | 42.0 (35.0) | **44.1** (**36.2**) |"
        in paper
    )


def test_grid_reads_each_task_once(tiny_model_dir, toy_task_master, tmp_path, monkeypatch):
    real_load = reproduce_mod.load_task
    loads = []
    monkeypatch.setattr(reproduce_mod, "load_task", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    assert (
        main(
            reproduce_argv(
                tiny_model_dir, toy_task_master, tmp_path / "rep", methods=["zeroshot", "kmat"], seeds=[1, 2]
            )
        )
        == 0
    )
    assert len(loads) == 1  # 4 runs, one task: read and checked once


def test_an_options_variant_gets_its_own_column_and_the_default_keeps_its_name(tmp_path):
    hi, lo = {"acc": 60.0, "macro_f1": 50.0}, {"acc": 40.0, "macro_f1": 30.0}
    _fake_result(tmp_path, "skin1", "kmat", 1, hi, lo)
    d = tmp_path / "runs" / "skin1" / "kmat" / "16shot-alpha=0.1" / "seed1"
    d.mkdir(parents=True)
    (d / "result.json").write_text(
        (tmp_path / "runs" / "skin1" / "kmat" / "16shot" / "seed1" / "result.json").read_text()
    )
    labels = sorted({r["label"] for r in collect(tmp_path)})
    assert labels == ["kmat", "kmat [16shot-alpha=0.1]"]
    header = table2_markdown(aggregate(collect(tmp_path))).splitlines()[0]
    assert header == "| Dataset | | K-MaT | K-MaT [16shot-alpha=0.1] |"


def test_methods_with_table_3_is_refused(tiny_model_dir, toy_task_master, tmp_path, capsys):
    code = main(
        reproduce_argv(
            tiny_model_dir, toy_task_master, tmp_path / "rep", table="3", methods=["coop"], seeds=[1, 2]
        )
    )
    assert code == 2
    assert "--methods: only with --table 2" in capsys.readouterr().err


def test_per_class_figure_has_error_bars_chance_line_and_marks_zero_and_missing(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from kmat.report.plots import per_class_low

    agg = {
        ("toy", "coop"): {
            "low_acc": (50.0, 5.0, 2),
            "per_class_low": {"a": 80.0, "b": 0.0, "c": None},
            "per_class_low_std": {"a": 10.0, "b": 0.0, "c": None},
        },
        ("toy", "kmat"): {
            "low_acc": (60.0, 1.0, 2),
            "per_class_low": {"a": 70.0, "b": 40.0, "c": 30.0},
            "per_class_low_std": {"a": 2.0, "b": 4.0, "c": 6.0},
        },
    }
    shown = []
    monkeypatch.setattr(plt, "close", lambda fig: shown.append(fig))
    assert per_class_low(agg, "toy", tmp_path / "f.png") is not None
    ax = shown[0].axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("0") == 1 and texts.count("n/a") == 1  # zero bar and missing class told apart
    chance = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert chance and abs(chance[0].get_ydata()[0] - 100 / 3) < 1e-9
    assert len(ax.containers) >= 2 and any(c.__class__.__name__ == "ErrorbarContainer" for c in ax.containers)
    assert "error bars: std" in ax.get_title()


def test_aggregate_has_the_per_class_std_over_seeds():
    from kmat.report.results import aggregate

    rows = []
    for acc in (40.0, 60.0):
        rows.append(
            {
                "task": "t",
                "label": "coop",
                **{f"{r}_{m}": 50.0 for r in ("high", "low", "h") for m in ("acc", "macro_f1")},
                "per_class_low": {"a": acc, "b": None},
            }
        )
    cell = aggregate(rows)[("t", "coop")]
    assert cell["per_class_low"] == {"a": 50.0, "b": None}
    assert (
        abs(cell["per_class_low_std"]["a"] - 14.142135623730951) < 1e-9
        and cell["per_class_low_std"]["b"] is None
    )


# --------------------------------------------------------------------------------------------
# Table 2+: every registered method, the paper's six first


class _StandIn:
    """A registered method standing in for those other branches add (an adapter's place)."""

    @staticmethod
    def make():
        from dataclasses import dataclass

        import torch
        import torch.nn.functional as F
        from torch import nn

        from kmat.methods.base import Method, cross_entropy
        from kmat.methods.config import MethodConfig

        @dataclass
        class StandInConfig(MethodConfig):
            epochs: int = 1
            batch_size: int = 8
            lr: float = 0.01

        class StandIn(Method[StandInConfig]):
            name = "standin_adapter"
            Config = StandInConfig

            def __init__(self, ctx, cfg):
                super().__init__(ctx, cfg)
                self.table = nn.Parameter(ctx.zeroshot_embeddings().clone())

            def loss(self, feats, labels):
                t = F.normalize(self.table, dim=-1)
                ce = cross_entropy(self.logit_scale * feats.to(t.device) @ t.T, labels)
                return {"ce": ce, "total": ce}

            @torch.no_grad()
            def class_embeddings(self):
                t = F.normalize(self.table, dim=-1)
                return {"high": t, "low": t}

        return StandIn


@pytest.fixture()
def standin_method():
    from kmat.methods import register, unregister

    cls = _StandIn.make()
    register(cls)
    try:
        yield cls.name
    finally:
        unregister(cls.name)


def test_table2_plus_methods_are_the_papers_six_then_the_declared_then_the_rest_sorted():
    from kmat.run.experiments import TABLE2_METHODS, table2_plus_methods

    six = [m for m, _ in TABLE2_METHODS]
    registered = ["zz_mine", "tip_adapter", *reversed(six), "prograd", "aa_other"]
    methods, skipped = table2_plus_methods(registered)
    assert methods == [*six, "prograd", "tip_adapter", "aa_other", "zz_mine"]
    assert skipped == [
        "linear_probe",
        "lp_pp",
        "clip_adapter",
        "tip_adapter_f",
        "zeroshot_desc",
    ]  # not an error


def test_table2_columns_order_and_what_is_not_a_column():
    from kmat.run.experiments import table2_columns

    labels = ["mine", "tip_adapter_f", "kmat", "kmat-r3", "kmat-sens", "kmat-sens [16shot-alpha=0.1]"]
    labels += ["zeroshot", "prograd", "kmat [4shot]"]
    assert table2_columns(labels) == ["zeroshot", "kmat", "prograd", "tip_adapter_f", "kmat [4shot]", "mine"]
    assert table2_columns(labels, variants=False) == ["zeroshot", "kmat", "prograd", "tip_adapter_f", "mine"]


def test_table2_plus_through_reproduce_lists_the_papers_six_first(
    standin_method, tiny_model_dir, toy_task_master, tmp_path, capsys
):
    from kmat.methods import available_methods
    from kmat.run.experiments import TABLE2_METHODS, TABLE2_PLUS

    out = tmp_path / "rep"
    code = main(reproduce_argv(tiny_model_dir, toy_task_master, out, table="2+"))
    printed = capsys.readouterr()
    assert code == 0, printed.err
    missing = [m for m, _ in TABLE2_PLUS if m not in available_methods()]
    if missing:  # declared but not installed in this branch: a note, not an error
        assert f"Table 2+: {', '.join(missing)} not registered here: skipped" in printed.out
    header = next(
        line for line in (out / "table2.md").read_text().splitlines() if line.startswith("| Dataset")
    )
    columns = [c.strip() for c in header.strip("|").split("|")][2:]
    assert columns[:6] == [name for _, name in TABLE2_METHODS]
    assert "ProGrad" in columns and standin_method in columns
    assert columns.index("ProGrad") < columns.index(standin_method)
    assert len(columns) == len(available_methods())  # every registered method, once
    ran = {p.name for p in (out / "runs" / "toy").iterdir()}
    assert ran == set(available_methods())


def test_table2_plus_refuses_methods_and_an_unknown_method_is_named(
    tiny_model_dir, toy_task_master, tmp_path, capsys
):
    code = main(
        reproduce_argv(
            tiny_model_dir, toy_task_master, tmp_path / "rep", table="2+", methods=["coop"], seeds=[1, 2]
        )
    )
    assert code == 2 and "Table 2+ runs every registered method" in capsys.readouterr().err
    code = main(
        reproduce_argv(
            tiny_model_dir, toy_task_master, tmp_path / "rep", methods=["coop", "nosuch"], seeds=[1, 2]
        )
    )
    err = capsys.readouterr().err
    assert code == 2 and "--methods: unknown method(s) nosuch; registered:" in err and "prograd" in err
    assert not (tmp_path / "rep").exists()


def test_per_class_figure_takes_a_dozen_methods_in_table_order(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from kmat.report.plots import per_class_low
    from kmat.run.experiments import TABLE2_PLUS

    labels = [m for m, _ in TABLE2_PLUS] + ["mine"]
    agg = {
        ("toy", lab): {
            "low_acc": (50.0, 1.0, 3),
            "per_class_low": {"a": 10.0 + i, "b": 50.0, "c": 0.0},
            "per_class_low_std": {"a": 1.0, "b": 2.0, "c": 0.0},
        }
        for i, lab in enumerate(reversed(labels))
    }
    agg[("toy", "kmat-r2")] = agg[("toy", "kmat")]  # an ablation row: not a bar
    shown = []
    monkeypatch.setattr(plt, "close", lambda fig: shown.append(fig))
    assert per_class_low(agg, "toy", tmp_path / "f.png") is not None
    legend = [t.get_text() for t in shown[0].axes[0].get_legend().get_texts()]
    assert legend == ["chance (33.3 %)", *[name for _, name in TABLE2_PLUS], "mine"]
    bars = [c for c in shown[0].axes[0].containers if c.__class__.__name__ == "BarContainer"]
    colours = [(b.patches[0].get_facecolor(), b.patches[0].get_hatch()) for b in bars]
    assert len(set(colours)) == len(labels)  # past ten colours, hatching tells them apart
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_demo_table2_plus_runs_every_registered_method(tmp_path, monkeypatch):
    import kmat.tools.demo as demo
    from kmat.methods import available_methods
    from kmat.run.experiments import TABLE2_METHODS, table2_plus_methods

    grids = []
    monkeypatch.setattr(demo, "synth_task_dir", lambda pair, **k: tmp_path / pair.task)
    monkeypatch.setattr(
        demo, "run_grid", lambda specs, *a, **k: grids.append(specs) or reproduce_mod.GridReport()
    )
    monkeypatch.setattr("kmat.report.results.write_report", lambda *a, **k: {})
    for wide in (False, True):
        demo.run_demo(tmp_path / "out", quick=True, backbone="demo", wide=wide, show_progress=False)
    narrow, plus = ([s.method for s in specs if s.task == "synthmed"] for specs in grids)
    assert narrow == [m for m, _ in TABLE2_METHODS]
    assert plus == table2_plus_methods()[0] and set(plus) == set(available_methods())
