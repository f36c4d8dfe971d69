"""`kmat table` never hides a damaged or mixed run: an invalid result.json is named and counted (an
error under --strict), cells over fewer seeds are named, and runs of different configurations are
never averaged."""

import copy
import json
import math

import pytest

from cli_helpers import reproduce_argv
from kmat.cli import main
from kmat.errors import ResultError
from kmat.report.results import aggregate, collect, read_runs
from kmat.run.schema import check_result

HI = {"acc": 60.0, "macro_f1": 50.0}
LO = {"acc": 40.0, "macro_f1": 30.0}

# The shape of a real result.json (kmat train --method coop --epochs 1 on the toy task with the tiny
# test model), with the history shortened
TEMPLATE = {
    "schema_version": 2,
    "method": "coop",
    "task": "toy",
    "shots": 16,
    "seed": 1,
    "backbone": "local-dir:/models/tiny",
    "config": {
        "task": "/tasks/toy",
        "out": "/out/r",
        "method": "coop",
        "data_root": None,
        "backbone": "local-dir:/models/tiny",
        "shots": 16,
        "seed": 1,
        "device": "cpu",
        "precision": "fp32",
        "feature_cache": True,
        "augment": True,
        "feature_batch_size": None,
        "min_descriptions": 1,
        "show_progress": False,
        "options": {},
        "method_config": {
            "epochs": 200,
            "batch_size": 32,
            "lr": 0.002,
            "momentum": 0.9,
            "weight_decay": 0.0005,
            "warmup_epochs": 1,
            "warmup_lr": 1e-05,
            "logit_scale": None,
            "n_ctx": 4,
            "init_words": "a photo of a",
            "template": "{classname}.",
            "init_std": 0.02,
        },
        "backbone_identity": "local-dir:/models/tiny@87506311557c4564",
        "task_folder": "/tasks/toy",
        "classes": ["normal", "benign", "malignant"],
        "modalities": {"high": "hiscan", "low": "loscan"},
        "published_defaults": None,
    },
    "metrics": {"high": HI, "low": LO, "h": {"acc": 48.0, "macro_f1": 37.5}},
    "per_class": {
        "high": {"normal": 0.0, "benign": 0.0, "malignant": 100.0},
        "low": {"normal": 0.0, "benign": 100.0, "malignant": 0.0},
    },
    "confusion": {"high": [[0, 0, 3], [0, 0, 3], [0, 0, 3]], "low": [[0, 3, 0], [0, 3, 0], [1, 2, 0]]},
    "n_test": {"high": 9, "low": 9},
    "val": {"high": {"acc": 33.3, "macro_f1": 16.7, "n": 6}, "low": {"acc": 33.3, "macro_f1": 16.7, "n": 6}},
    "history": [{"epoch": 0, "lr": 1e-05, "steps": 1, "seconds": 0.01, "ce": 1.09, "total": 1.09}],
    "timing": {"load_s": 0.02, "train_s": 0.06, "eval_s": 0.04, "total_s": 0.3},
    "versions": {"kmat": "0.1.0", "python": "3.11.7", "torch": "2.14.1"},
}


def _write(out, task, label, seed, lo_acc=40.0, setting="16shot", method_config=None, backbone_id=None):
    """A result.json of the real shape at OUT/runs/<task>/<label>/<setting>/seed<S>; returns its path."""
    res = copy.deepcopy(TEMPLATE)
    res.update(method=label, task=task, seed=seed)
    res["config"].update(method=label, task=task, seed=seed)
    res["config"]["method_config"].update(method_config or {})
    if backbone_id:
        res["config"]["backbone_identity"] = backbone_id
    res["metrics"]["low"] = {"acc": lo_acc, "macro_f1": 30.0}
    h = 2 * HI["acc"] * lo_acc / (HI["acc"] + lo_acc)
    res["metrics"]["h"] = {"acc": h, "macro_f1": 37.5}
    d = out / "runs" / task / label / setting / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(res))
    return d / "result.json"


def _grid(out, seeds=(1, 2, 3), tasks=("skin1", "breast")):
    for task in tasks:
        for label in ("coop", "kmat"):
            for seed in seeds:
                _write(out, task, label, seed, lo_acc=30.0 + 10 * seed)


def _table(out, *extra):
    return main(["table", str(out), "--table", "2", "--no-figures", *extra])


def test_template_has_the_shape_of_a_real_result():
    check_result(TEMPLATE, "x")  # must not raise


def _nan_metric(res):
    res["metrics"]["low"]["acc"] = math.nan


def _null_metric(res):
    res["metrics"]["low"]["acc"] = None


def _out_of_range(res):
    res["metrics"]["high"]["macro_f1"] = 150.0


def _string_seed(res):
    res["seed"] = "2"


def _no_h(res):
    del res["metrics"]["h"]


DAMAGE = {
    "truncated": (lambda text: text[: len(text) // 2], "unreadable result"),
    "garbage": (lambda text: "garbage" * 10, "unreadable result"),
    "empty list": (lambda text: "[]", "not a kmat result"),
    "null metric": (_null_metric, "metrics.low.acc: input should be a valid number, got null"),
    "NaN metric": (_nan_metric, "metrics.low.acc: NaN is not a finite number"),
    "out of range": (_out_of_range, "metrics.high.macro_f1: 150.0 is not a percentage in [0, 100]"),
    "string seed": (_string_seed, 'seed: input should be a valid integer, got "2"'),
    "no H": (_no_h, "metrics.h: missing"),
}


def _damage(path, how):
    change, _ = DAMAGE[how]
    text = path.read_text()
    if how in ("truncated", "garbage", "empty list"):
        path.write_text(change(text))
    else:
        res = json.loads(text)
        change(res)
        path.write_text(json.dumps(res))  # NaN is written as NaN, as json.dumps does


@pytest.mark.parametrize("how", list(DAMAGE))
def test_an_invalid_result_is_named_counted_and_not_averaged(tmp_path, capsys, how):
    _grid(tmp_path)
    bad = tmp_path / "runs" / "skin1" / "coop" / "16shot" / "seed2" / "result.json"
    _damage(bad, how)
    assert _table(tmp_path) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if str(bad) in line]
    assert len(warnings) == 1 and warnings[0].startswith("kmat: warning:")
    assert DAMAGE[how][1] in warnings[0]
    table = (tmp_path / "table2.md").read_text()
    assert "**1 run(s) left out of these tables** (1 with an unreadable or invalid result.json)" in table
    assert f"- {bad}: " in table
    assert "1 run(s) left out" in captured.out  # the printout says it too
    # the CoOp cell on Skin I is a mean over seeds 1 and 3 only, and says so
    assert "CoOp on Skin I: n=2" in table
    agg = aggregate(collect(tmp_path))
    assert agg[("skin1", "coop")]["low_acc"][::2] == pytest.approx((50.0, 2))
    assert agg[("skin1", "kmat")]["low_acc"][::2] == pytest.approx((50.0, 3))


def test_strict_fails_with_one_error_line_naming_every_bad_run(tmp_path, capsys):
    _grid(tmp_path)
    bad1 = tmp_path / "runs" / "skin1" / "coop" / "16shot" / "seed2" / "result.json"
    bad2 = tmp_path / "runs" / "breast" / "kmat" / "16shot" / "seed3" / "result.json"
    _damage(bad1, "NaN metric")
    _damage(bad2, "truncated")
    assert _table(tmp_path, "--strict") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("kmat: error: 2 run(s)")
    assert f"{bad1}: metrics.low.acc: NaN is not a finite number" in err
    assert f"{bad2}: unreadable result" in err
    assert not (tmp_path / "table2.md").exists() and not (tmp_path / "results.csv").exists()


def test_strict_passes_a_clean_grid(tmp_path, capsys):
    _grid(tmp_path)
    assert _table(tmp_path, "--strict") == 0
    captured = capsys.readouterr()
    assert "kmat: warning" not in captured.err
    table = (tmp_path / "table2.md").read_text()
    assert "left out" not in table and "Seeds per cell differ" not in table


def test_a_seed_with_other_epochs_is_never_averaged(tmp_path, capsys):
    _grid(tmp_path)
    _write(tmp_path, "skin1", "coop", 2, lo_acc=90.0, method_config={"epochs": 50})
    rows = collect(tmp_path)
    assert ("skin1", "coop") not in aggregate(rows)  # the cell is left out, not a mean of the two
    assert ("breast", "coop") in aggregate(rows) and ("skin1", "kmat") in aggregate(rows)
    capsys.readouterr()
    assert _table(tmp_path) == 0
    captured = capsys.readouterr()
    cell = tmp_path / "runs" / "skin1" / "coop" / "16shot"
    warning = [line for line in captured.err.splitlines() if str(cell) in line]
    assert len(warning) == 1
    assert "seed2 differ(s) from seed1, seed3 in method_config.epochs: 200 -> 50" in warning[0]
    table = (tmp_path / "table2.md").read_text()
    lines = table.splitlines()
    head = lines.index("| Dataset | | CoOp | K-MaT |")
    assert lines[head + 2].startswith("| Skin I | Hi | – | ")
    coop = [line.split(" | ")[2] for line in lines[head + 2 : head + 8]]  # Skin I, Breast: Hi, Lo, H
    assert coop[:3] == ["–"] * 3 and "–" not in coop[3:]
    assert "**3 run(s) left out of these tables** (3 in 1 cell(s) whose runs have different" in table
    assert len((tmp_path / "results.csv").read_text().strip().splitlines()) == 1 + 12  # every valid run
    assert _table(tmp_path, "--strict") == 2
    err = capsys.readouterr().err
    assert err.startswith("kmat: error: 3 run(s)") and "method_config.epochs: 200 -> 50" in err


def test_other_backbone_weights_are_not_averaged_but_a_moved_model_is(tmp_path):
    for seed in (1, 2):
        _write(tmp_path, "skin1", "kmat", seed, backbone_id="local-dir:/models/a@1111")
    _write(tmp_path, "skin1", "kmat", 3, backbone_id="local-dir:/elsewhere/a@1111")  # same weights
    _write(tmp_path, "skin1", "coop", 1, backbone_id="local-dir:/models/a@1111")
    _write(tmp_path, "skin1", "coop", 2, backbone_id="local-dir:/models/a@2222")
    runs = read_runs(tmp_path)
    assert len(runs.invalid) == 0 and len(runs.mixed) == 1
    assert "runs/skin1/coop/16shot: " in runs.mixed[0]
    assert "backbone: 'weights 1111' -> 'weights 2222'" in runs.mixed[0]
    assert {r["label"] for r in runs.table_rows} == {"kmat"}
    assert len(runs.table_rows) == 3


def test_seed_counts_are_named_under_the_table(tmp_path, capsys):
    _grid(tmp_path, seeds=(1, 2))
    _write(tmp_path, "breast", "kmat", 3)
    assert _table(tmp_path) == 0
    table = (tmp_path / "table2.md").read_text()
    note = [line for line in table.splitlines() if line.startswith("Seeds per cell differ")]
    assert note == [
        "Seeds per cell differ: these cells are means over fewer seeds than the others (n=3): "
        "CoOp on Skin I: n=2; K-MaT on Skin I: n=2; CoOp on Breast: n=2"
    ]
    assert note[0] in capsys.readouterr().out


def test_check_result_names_the_file_and_fields():
    res = copy.deepcopy(TEMPLATE)
    res["metrics"]["low"]["acc"] = math.inf
    res["confusion"]["low"] = [[1, 2], [3]]
    with pytest.raises(ResultError) as err:
        check_result(res, "runs/x/coop/16shot/seed2/result.json")
    assert str(err.value) == (
        "runs/x/coop/16shot/seed2/result.json: metrics.low.acc: Infinity is not a finite number; "
        "confusion.low: not a square matrix (one row and column per class)"
    )


def test_reproduce_strict_on_real_runs(tiny_model_dir, toy_task_master, tmp_path, capsys):
    """Real result.json files pass the check; a NaN written into a finished run fails --strict."""
    out = tmp_path / "rep"
    args = reproduce_argv(
        tiny_model_dir, toy_task_master, out, "--strict", methods=["zeroshot"], seeds=[1, 2], epochs=None
    )
    assert main(args) == 0
    assert "left out" not in (out / "table2.md").read_text()
    [bad] = out.glob("runs/toy/zeroshot/*/seed2/result.json")
    _damage(bad, "NaN metric")
    capsys.readouterr()
    assert main(args) == 2  # the grid skips the finished run; the report refuses it
    err = capsys.readouterr().err
    assert f"kmat: error: 1 run(s) under {out / 'runs'} cannot be used in the tables: {bad}: " in err
