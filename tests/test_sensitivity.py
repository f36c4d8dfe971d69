"""kmat reproduce --table sensitivity: the grid's cells, a tiny grid through the command line, and the
report computed from hand-written result files."""

import json

import pytest

from cli_helpers import reproduce_argv
from kmat.cli import main
from kmat.errors import ConfigError
from kmat.report.results import aggregate, collect, table2_markdown
from kmat.report.sensitivity import sensitivity_markdown, sensitivity_studies, summary_rows
from kmat.run.experiments import SENSITIVITY_LABEL, sensitivity_cells, sensitivity_grid
from kmat.run.layout import grid_run_dir


def test_default_grid_runs_lambda_fgw_zero_once():
    cells = sensitivity_cells()
    # lambda_fgw = 0: once per lambda_anchor (4), without alpha; the rest: 3 alphas x 3 x 4
    assert len(cells) == 4 + 3 * 3 * 4
    off = [c for c in cells if c["lambda_fgw"] == 0]
    assert off == [{"lambda_fgw": 0.0, "lambda_anchor": v} for v in (0.0, 0.3, 1.0, 3.0)]
    on = {(c["alpha"], c["lambda_fgw"], c["lambda_anchor"]) for c in cells if c["lambda_fgw"] > 0}
    assert on == {(a, f, n) for a in (0.1, 0.5, 0.9) for f in (0.3, 1.0, 3.0) for n in (0.0, 0.3, 1.0, 3.0)}
    assert len(on) == 36  # no cell twice

    specs = sensitivity_grid([("toy", "/data/toy")], [1, 2], 16, {"epochs": 2, "W": 4.0})
    assert len(specs) == 40 * 2
    assert {s.label for s in specs} == {SENSITIVITY_LABEL} and {s.method for s in specs} == {"kmat"}
    names = {s.name for s in specs}
    assert f"toy/{SENSITIVITY_LABEL}/16shot-epochs=2,lambda_anchor=1,lambda_fgw=0/seed2" in names
    assert f"toy/{SENSITIVITY_LABEL}/16shot-alpha=0.5,epochs=2,lambda_anchor=0.3,lambda_fgw=3/seed1" in names
    assert all("W" not in s.options for s in specs)  # K-MaT's options only


def test_grid_values_can_be_narrowed_and_are_checked():
    cells = sensitivity_cells([0.1, 0.9, 0.9], [0, 1], [0, 1])  # a duplicate is dropped
    assert cells == [
        {"lambda_fgw": 0.0, "lambda_anchor": 0.0},
        {"lambda_fgw": 0.0, "lambda_anchor": 1.0},
        {"alpha": 0.1, "lambda_fgw": 1.0, "lambda_anchor": 0.0},
        {"alpha": 0.1, "lambda_fgw": 1.0, "lambda_anchor": 1.0},
        {"alpha": 0.9, "lambda_fgw": 1.0, "lambda_anchor": 0.0},
        {"alpha": 0.9, "lambda_fgw": 1.0, "lambda_anchor": 1.0},
    ]
    with pytest.raises(ConfigError, match="alpha must be <= 1"):
        sensitivity_cells([1.5])
    with pytest.raises(ConfigError, match="lambda_fgw must be >= 0"):
        sensitivity_cells(lambda_fgws=[-1])
    with pytest.raises(ConfigError, match="varied by the sensitivity grid") as err:
        sensitivity_grid([("toy", "toy")], [1], 16, {"lambda_anchor": 2.0})
    assert err.value.field == "lambda_anchor"
    with pytest.raises(ConfigError, match="turns its term off"):
        sensitivity_grid([("toy", "toy")], [1], 16, {"fgw": False})


REDUCED = ["--sens-alpha", "0.1", "0.9", "--sens-lambda-fgw", "0", "1", "--sens-lambda-anchor", "0", "1"]


def test_reduced_grid_through_the_cli_writes_report_and_figure_and_resumes(
    tiny_model_dir, toy_task_master, tmp_path, capsys
):
    out = tmp_path / "rep"
    assert (
        main(
            reproduce_argv(tiny_model_dir, toy_task_master, out, *REDUCED, table="sensitivity", figures=True)
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "6 run(s) (1 task(s) x 6 configuration(s) x 1 seed(s))" in printed
    assert "Summary: can the high-end validation split see lambda_fgw?" in printed  # the summary is printed
    settings = sorted(p.name for p in (out / "runs" / "toy" / SENSITIVITY_LABEL).iterdir())
    assert settings == [
        "16shot-alpha=0.1,epochs=1,lambda_anchor=0,lambda_fgw=1",
        "16shot-alpha=0.1,epochs=1,lambda_anchor=1,lambda_fgw=1",
        "16shot-alpha=0.9,epochs=1,lambda_anchor=0,lambda_fgw=1",
        "16shot-alpha=0.9,epochs=1,lambda_anchor=1,lambda_fgw=1",
        "16shot-epochs=1,lambda_anchor=0,lambda_fgw=0",  # alpha has no effect: run once
        "16shot-epochs=1,lambda_anchor=1,lambda_fgw=0",
    ]
    report = (out / "sensitivity.md").read_text()
    assert "## Setting 16shot-epochs=1 (tasks: toy)" in report
    assert report.count("| lambda_fgw | lambda_anchor = 0 | lambda_anchor = 1 |") == 2  # one table per alpha
    off_rows = [line for line in report.splitlines() if line.startswith("| 0 (L_FGW off) |")]
    assert len(off_rows) == 2 and off_rows[0] == off_rows[1]  # the same runs under both alphas
    assert "val Hi 33.3" in report and "val Hi –" not in report  # every run records its val accuracy
    fig = out / "figures" / "sensitivity_toy.png"
    assert fig.is_file() and fig.stat().st_size > 5000
    assert not (out / "table2.md").exists() and not (out / "table3.md").exists()

    mtime = (out / "runs/toy" / SENSITIVITY_LABEL / settings[0] / "seed1/result.json").stat().st_mtime_ns
    assert main(reproduce_argv(tiny_model_dir, toy_task_master, out, *REDUCED, table="sensitivity")) == 0
    assert "0 run(s) finished, 6 already done, 0 failed" in capsys.readouterr().out
    assert (
        out / "runs/toy" / SENSITIVITY_LABEL / settings[0] / "seed1/result.json"
    ).stat().st_mtime_ns == mtime
    assert (out / "sensitivity.md").read_text() == report

    (out / "sensitivity.md").unlink()
    assert main(["table", str(out), "--table", "sensitivity", "--no-figures"]) == 0
    assert (out / "sensitivity.md").read_text() == report
    (out / "sensitivity.md").unlink()
    assert main(["table", str(out), "--no-figures"]) == 0  # by default too, when there are such runs
    assert (out / "sensitivity.md").read_text() == report


def test_sensitivity_flags_only_with_the_sensitivity_table(tiny_model_dir, toy_task_master, tmp_path, capsys):
    args = ["reproduce", "--tasks", str(toy_task_master), "--out", str(tmp_path / "o"), "--dry-run"]
    assert main([*args, "--table", "2", "--sens-alpha", "0.5"]) == 2
    assert "--sens-alpha: only with --table sensitivity" in capsys.readouterr().err
    assert main([*args, "--table", "sensitivity", "--alpha", "0.5"]) == 2
    assert "varied by the sensitivity grid" in capsys.readouterr().err
    assert main([*args, "--table", "sensitivity", "--seeds", "1", *REDUCED]) == 0
    assert "6 pending, 0 done" in capsys.readouterr().out


def _sens_result(out, task, seed, cell, lo, val=None, hi=None, options=None):
    """A hand-written result.json of one sensitivity run (hi defaults to lo, so that H = lo)."""
    opts = {**(options or {}), **cell}
    d = grid_run_dir(out, task, SENSITIVITY_LABEL, 16, seed, opts)
    d.mkdir(parents=True)
    hi = lo if hi is None else hi
    h = 2 * hi * lo / (hi + lo)
    res = {
        "method": "kmat",
        "task": task,
        "seed": seed,
        "shots": 16,
        "backbone": "x",
        "config": {
            "options": opts,
            "method_config": {"alpha": 0.1, "lambda_fgw": 1.0, "lambda_anchor": 1.0, "epochs": 50, **opts},
        },
        "metrics": {
            "high": {"acc": hi, "macro_f1": hi},
            "low": {"acc": lo, "macro_f1": lo},
            "h": {"acc": h, "macro_f1": h},
        },
        "per_class": {"low": {"a": lo}},
    }
    if val is not None:
        res["val"] = {"high": {"acc": val, "macro_f1": val}, "low": {"acc": 0.0, "macro_f1": 0.0}}
    (d / "result.json").write_text(json.dumps(res))


def _cell(alpha, lf, la):
    c = {"lambda_fgw": lf, "lambda_anchor": la}
    return c if lf == 0 else {"alpha": alpha, **c}


def _write_hand_grid(out):
    # skin1, seeds 1 and 2: (alpha, lambda_fgw, lambda_anchor) -> [(lo, val) per seed]
    skin1 = {
        (None, 0, 0): [(40, 60), (50, 62)],
        (None, 0, 1): [(50, 60), (50, 60)],
        (0.1, 1, 0): [(30, 58), (30, 58)],
        (0.1, 1, 1): [(60, 61), (70, 61)],
        (0.9, 1, 0): [(20, 58), (20, 58)],
        (0.9, 1, 1): [(44, 63), (46, None)],  # seed 2 has no "val": the cell shows none
    }
    for (a, lf, la), runs in skin1.items():
        for seed, (lo, val) in enumerate(runs, start=1):
            _sens_result(out, "skin1", seed, _cell(a, lf, la), lo, val)
    # chest, seed 1 only, Lo 40 and val 70 everywhere; (0.9, 1, 1) was not run
    for a, lf, la in [(None, 0, 0), (None, 0, 1), (0.1, 1, 0), (0.1, 1, 1), (0.9, 1, 0)]:
        _sens_result(out, "chest", 1, _cell(a, lf, la), 40, 70)


def test_report_from_hand_written_results(tmp_path):
    _write_hand_grid(tmp_path)
    studies = sensitivity_studies(collect(tmp_path))
    assert len(studies) == 1
    study = studies[0]
    assert study.setting == "16shot" and study.tasks == ["skin1", "chest"]
    assert (study.alphas, study.lambda_fgws, study.lambda_anchors) == ([0.1, 0.9], [0.0, 1.0], [0.0, 1.0])
    c = study.cell("skin1", 0.9, 0.0, 0.0)  # the lambda_fgw = 0 cell, whatever the alpha
    assert c is study.cell("skin1", 0.1, 0.0, 0.0)
    assert c.low == pytest.approx((45.0, 7.0710678, 2)) and c.val_high == pytest.approx(61.0)
    assert study.cell("skin1", 0.9, 1.0, 1.0).val_high is None
    avg = study.cell("avg", 0.1, 0.0, 0.0)  # mean of the per-task means; std: mean of the stds
    assert avg.low == pytest.approx((42.5, 7.0710678 / 2, 1)) and avg.val_high == pytest.approx(65.5)
    assert study.cell("avg", 0.9, 1.0, 1.0) is None  # chest lacks it

    text = sensitivity_markdown(studies)
    lines = text.splitlines()

    def table(title, alpha):
        i = lines.index(f"### {title}")
        j = lines.index(f"#### alpha = {alpha}", i)
        return lines[j + 2 : j + 6]

    assert table("Skin I (2 seeds)", "0.1") == [
        "| lambda_fgw | lambda_anchor = 0 | lambda_anchor = 1 |",
        "|---|---|---|",
        "| 0 (L_FGW off) | Lo 45.0±7.1 · H 45.0±7.1 · val Hi 61.0 | Lo 50.0±0.0 · H 50.0±0.0 · val Hi 60.0 |",
        "| 1 | Lo 30.0±0.0 · H 30.0±0.0 · val Hi 58.0 | Lo 65.0±7.1 · H 65.0±7.1 · val Hi 61.0 |",
    ]
    assert table("Skin I (2 seeds)", "0.9")[2:] == [
        "| 0 (L_FGW off) | Lo 45.0±7.1 · H 45.0±7.1 · val Hi 61.0 | Lo 50.0±0.0 · H 50.0±0.0 · val Hi 60.0 |",
        "| 1 | Lo 20.0±0.0 · H 20.0±0.0 · val Hi 58.0 | Lo 45.0±1.4 · H 45.0±1.4 · val Hi – |",
    ]
    assert table("Chest (1 seed)", "0.9")[2:] == [  # one seed: no ±
        "| 0 (L_FGW off) | Lo 40.0 · H 40.0 · val Hi 70.0 | Lo 40.0 · H 40.0 · val Hi 70.0 |",
        "| 1 | Lo 40.0 · H 40.0 · val Hi 70.0 | – |",
    ]
    # Avg. (chest has one seed, so no ±): lambda_fgw 1, alpha 0.1: Lo mean(30, 40), val mean(58, 70);
    # lambda_anchor 1: Lo mean(65, 40), val mean(61, 70)
    assert table("Avg. (1-2 seeds per task)", "0.1")[2:] == [
        "| 0 (L_FGW off) | Lo 42.5 · H 42.5 · val Hi 65.5 | Lo 45.0 · H 45.0 · val Hi 65.0 |",
        "| 1 | Lo 35.0 · H 35.0 · val Hi 64.0 | Lo 52.5 · H 52.5 · val Hi 65.5 |",
    ]

    # summary at lambda_anchor = 1, over lambda_fgw in {0, 1}
    rows = {(r.task, r.alpha): r for r in summary_rows(study)}
    assert rows[("skin1", 0.1)].val_range == pytest.approx(1.0)  # 61 - 60
    assert rows[("skin1", 0.1)].low_range == pytest.approx(15.0)  # 65 - 50
    assert rows[("skin1", 0.9)].val_range is None  # lambda_fgw 1 has no val: one value only
    assert rows[("skin1", 0.9)].low_range == pytest.approx(5.0)  # 50 - 45
    assert rows[("avg", 0.1)].val_range == pytest.approx(0.5)  # 65.5 - 65
    assert rows[("avg", 0.1)].low_range == pytest.approx(7.5)  # 52.5 - 45
    i = lines.index(
        "| Task | alpha | val Hi range | Lo (test) range | lambda_fgw best on val Hi | best on Lo |"
    )
    assert lines[i + 2 : i + 8] == [
        "| Skin I | 0.1 | 1.0 (60.0–61.0) | 15.0 (50.0–65.0) | 1 | 1 |",
        "| Skin I | 0.9 | – | 5.0 (45.0–50.0) | – | 0 |",
        "| Chest | 0.1 | 0.0 (70.0–70.0) | 0.0 (40.0–40.0) | all equal | all equal |",
        "| Chest | 0.9 | – | – | – | – |",
        "| Avg. | 0.1 | 0.5 (65.0–65.5) | 7.5 (45.0–52.5) | 1 | 1 |",
        "| Avg. | 0.9 | – | – | – | – |",
    ]


def test_settings_are_kept_apart_and_out_of_table2(tmp_path):
    from kmat.report.plots import sensitivity_figures

    _write_hand_grid(tmp_path)
    _sens_result(tmp_path, "skin1", 1, _cell(None, 0, 0), 90, 90, options={"epochs": 2})
    kmat = grid_run_dir(tmp_path, "skin1", "kmat", 16, 1) / "result.json"
    kmat.parent.mkdir(parents=True)
    kmat.write_text(
        (
            tmp_path
            / "runs/chest"
            / SENSITIVITY_LABEL
            / "16shot-lambda_anchor=0,lambda_fgw=0/seed1/result.json"
        ).read_text()
    )
    rows = collect(tmp_path)
    studies = sensitivity_studies(rows)
    assert [s.setting for s in studies] == ["16shot", "16shot-epochs=2"]  # never averaged together
    assert studies[1].cell("skin1", None, 0.0, 0.0).low[0] == 90.0
    assert studies[0].cell("skin1", None, 0.0, 0.0).low[0] == 45.0
    assert table2_markdown(aggregate(rows)).splitlines()[0] == "| Dataset | | K-MaT |"
    names = sorted(p.name for p in sensitivity_figures(tmp_path, studies))
    assert names == [
        "sensitivity_avg-16shot.png",
        "sensitivity_chest-16shot.png",
        "sensitivity_skin1-16shot-epochs=2.png",
        "sensitivity_skin1-16shot.png",
    ]
