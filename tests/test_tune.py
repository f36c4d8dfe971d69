"""``kmat tune``: the search writes its trials, best config, final runs and figure; it resumes; the
high-val protocol reads no low-end data before the final evaluation; low-val marks its results."""

from __future__ import annotations

import builtins
import csv
import io
import json
from pathlib import Path

import pytest

from cli_helpers import tune_argv
from kmat.cli import main

pytest.importorskip("optuna")

SPACE = ["lr=0.0001:1:log", "lambda_fgw=0.1:10:log", "fgw_metric=euclidean,cosine"]


def _tune(tiny_model_dir, task, out, *extra, space=SPACE, trials=4):
    return main(tune_argv(tiny_model_dir, task, out, *extra, space=space, trials=trials, epochs=2))


def _rows(out: Path) -> list[dict]:
    with open(out / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_tune_writes_trials_best_config_final_runs_and_figure(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "tune"
    assert _tune(tiny_model_dir, toy_task, out, "--seeds", "1", "2") == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"]
    assert {r["state"] for r in rows} == {"complete"}
    for r in rows:
        assert 1e-4 <= float(r["lr"]) <= 1 and r["fgw_metric"] in ("euclidean", "cosine")
        per_seed = [float(r["objective_seed1"]), float(r["objective_seed2"])]
        assert float(r["objective"]) == pytest.approx(sum(per_seed) / 2, abs=1e-3)

    summary = json.loads((out / "tune.json").read_text())
    best = summary["best"]
    assert summary["protocol"] == "high-val"
    assert best["objective"] == pytest.approx(max(float(r["objective"]) for r in rows), abs=1e-3)

    # the final runs: real runs of the best configuration, one per seed, on both test splits
    for seed in (1, 2):
        res = json.loads((out / "final" / f"seed{seed}" / "result.json").read_text())
        assert res["protocol"] == "high-val" and res["seed"] == seed
        assert res["tuning"]["best_trial"] == best["number"]
        for k, v in best["params"].items():
            assert res["config"]["method_config"][k] == v
        # a trial scores exactly what the run records as its high-end validation accuracy
        assert res["val"]["high"]["acc"] == pytest.approx(best["per_seed"][str(seed)])
        assert set(res["metrics"]) == {"high", "low", "h"}
    for label in ("Hi", "Lo", "H ", "protocol: high-val", f"best trial #{best['number']}"):
        assert label in printed
    # the printout and OUT/table2.md show the final runs as a table row of their own, strict zero-shot
    assert "| Dataset | | K-MaT tuned |" in printed and "†" not in printed
    assert "| Dataset | | K-MaT tuned |" in (out / "table2.md").read_text()

    # best_config.json is a run config that `kmat train --config` accepts, and repeats the run
    cfg = json.loads((out / "best_config.json").read_text())
    assert cfg["options"]["epochs"] == 2 and cfg["seed"] == 1
    assert (
        main(["train", "--config", str(out / "best_config.json"), "--out", str(tmp_path / "again"), "-q"])
        == 0
    )
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    final1 = json.loads((out / "final" / "seed1" / "result.json").read_text())
    assert again["metrics"] == final1["metrics"]

    png = (out / "tune.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_an_interrupted_tune_resumes_with_its_finished_trials(
    tiny_model_dir, toy_task, tmp_path, monkeypatch
):
    import optuna

    import kmat.run.trial as trial_mod

    out = tmp_path / "tune"
    real = trial_mod.score_trial
    calls = {"n": 0}

    def interrupted_at_the_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_mod, "score_trial", interrupted_at_the_third)
    assert _tune(tiny_model_dir, toy_task, out) == 130  # Ctrl-C in the third trial
    first = _rows(out)
    assert [r["state"] for r in first] == ["complete", "complete", "interrupted"]
    assert not (out / "final").exists()
    monkeypatch.setattr(trial_mod, "score_trial", real)

    # a tune killed outright leaves its trial "running" in the study
    study = optuna.load_study(study_name="kmat-tune", storage=f"sqlite:///{out / 'optuna.db'}")
    study.ask()

    assert _tune(tiny_model_dir, toy_task, out) == 0
    rows = _rows(out)
    assert rows[:2] == first[:2]  # kept, not redone
    assert [r["state"] for r in rows] == [
        "complete",
        "complete",
        "interrupted",
        "interrupted",
        "complete",
        "complete",
    ]
    assert (out / "final" / "seed1" / "result.json").is_file()

    # more trials later: the same command with a larger --trials adds to the study
    assert _tune(tiny_model_dir, toy_task, out, trials=5) == 0
    assert [r["state"] for r in _rows(out)].count("complete") == 5


def test_resuming_with_another_search_is_refused(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "tune"
    assert _tune(tiny_model_dir, toy_task, out, "--no-final", trials=1) == 0
    capsys.readouterr()
    assert _tune(tiny_model_dir, toy_task, out, space=["lambda_fgw=0.1:1"], trials=2) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kmat: error:") and "another search" in err[0]


class _Recorder:
    """Every file opened (by path), with markers for the final runs."""

    def __init__(self, monkeypatch):
        self.events: list[str] = []
        real_open = builtins.open

        def recording_open(file, *args, **kwargs):
            if isinstance(file, str | Path):
                self.events.append(str(Path(file).resolve()))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", recording_open)
        monkeypatch.setattr(io, "open", recording_open)
        import kmat.tools.tune as tune

        real_final = tune._final_runs

        def marked_final(*args, **kwargs):
            self.events.append("<final run>")
            return real_final(*args, **kwargs)

        monkeypatch.setattr(tune, "_final_runs", marked_final)

    def split(self) -> tuple[list[str], list[str]]:
        i = self.events.index("<final run>")
        return self.events[:i], self.events[i:]


def _low_end_paths(task: Path) -> tuple[str, set[str], set[str]]:
    from kmat.data.task import load_task

    t = load_task(task)
    manifest = str(t.low.manifest.resolve())
    val = {str(s.path.resolve()) for s in t.low.split("val")}
    return manifest, val, {str(s.path.resolve()) for s in t.low.samples}


def test_high_val_reads_no_low_end_sample_before_the_final_evaluation(
    tiny_model_dir, toy_task, tmp_path, monkeypatch
):
    manifest, _, low = _low_end_paths(toy_task)
    high = {str(p.resolve()) for p in (toy_task / "images" / "hiscan").iterdir()}
    rec = _Recorder(monkeypatch)
    assert _tune(tiny_model_dir, toy_task, tmp_path / "tune", trials=3) == 0
    before, after = rec.split()
    assert manifest not in before and not low & set(before)  # no low-end label, path or image
    assert high & set(before)  # the trials did read the high-end images
    assert manifest in after  # the final evaluation reads the low-end data


def test_low_val_reads_the_low_end_val_split_and_marks_every_result(
    tiny_model_dir, toy_task, tmp_path, monkeypatch, capsys
):
    manifest, val, low = _low_end_paths(toy_task)
    rec = _Recorder(monkeypatch)
    out = tmp_path / "tune"
    assert _tune(tiny_model_dir, toy_task, out, "--select-on", "low-val", trials=2) == 0
    before, _ = rec.split()
    assert manifest in before and val & set(before)  # the objective peeks at the target modality
    assert not (low - val) & set(before)  # but only at its validation split
    mark = "low-val (not strict zero-shot)"
    assert json.loads((out / "final" / "seed1" / "result.json").read_text())["protocol"] == mark
    summary = json.loads((out / "tune.json").read_text())
    assert summary["protocol"] == mark and summary["objective"].startswith("low-end validation")
    printed = capsys.readouterr().out
    assert mark in printed and "not zero-shot" in printed
    # the printout's table and `kmat table OUT` mark the final runs as not strict zero-shot
    assert "| Dataset | | K-MaT tuned† |" in printed and "† not strict zero-shot" in printed
    (out / "table2.md").unlink()
    assert main(["table", str(out), "--no-figures", "-q"]) == 0
    table = (out / "table2.md").read_text()
    assert "| Dataset | | K-MaT tuned† |" in table and "† not strict zero-shot" in table
    with open(out / "results.csv", newline="") as fh:
        assert [r["strict_zero_shot"] for r in csv.DictReader(fh)] == ["False"]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("nope=0:1", "has no option 'nope'"),
        ("lambda_fgw=-1:1", "must be >= 0"),
        ("alpha=0:2", "must be <= 1"),
        ("lambda_fgw=1:0.5", "lower bound must be below"),
        ("lambda_fgw=0:1:log", ":log range needs a lower bound > 0"),
        ("lambda_fgw=0:1:cube", "range flag"),
        ("csc=0:1", "is a bool option"),
        ("fgw_metric=euclidean,manhattan", "must be one of"),
        ("n_ctx=1.5:4", "must be integers"),
        ("lambda_fgw", "expected NAME=LOW:HIGH"),
        ("lambda_fgw=a:b", "must be numbers"),
        ("lambda_fgw=1", "at least two different values"),
    ],
)
def test_a_bad_search_space_is_one_line(tiny_model_dir, toy_task, tmp_path, capsys, space, message):
    out = tmp_path / "tune"
    assert _tune(tiny_model_dir, toy_task, out, space=[space]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kmat: error:"), err
    assert message in err[0] and space.partition("=")[0] in err[0]
    assert not out.exists()


def test_searched_and_fixed_option_is_refused(tiny_model_dir, toy_task, tmp_path, capsys):
    assert (
        _tune(tiny_model_dir, toy_task, tmp_path / "t", "--lambda-fgw", "2", space=["lambda_fgw=0.1:1"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both searched and fixed" in err[0]
