"""``kmat tune --executor ray`` against a real local Ray instance (2 CPUs, started once for the
module): with one trial at a time the same trials, objectives, best configuration and final runs as
the local tune; trials in flight together; a killed worker's run retried (and past the retries a
failed trial); a trial left running by a dead driver marked interrupted on resume; Ctrl-C; and the
flags' one-line errors without Ray."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import tune_argv
from kmat.cli import main
from kmat.utils.io import read_safetensors

pytest.importorskip("optuna")

HAVE_RAY = importlib.util.find_spec("ray") is not None
SPACE = ["lr=0.0001:1:log", "lambda_fgw=0.1:10:log", "fgw_metric=euclidean,cosine"]


def ray_test(fn):  # noqa: ANN001, ANN201
    for mark in (
        pytest.mark.ray,
        pytest.mark.slow,
        pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'kmat[cluster]')"),
    ):
        fn = mark(fn)
    return fn


def _tune(tiny_model_dir, task, out, *extra, trials=3, seeds=("1",)):
    return main(tune_argv(tiny_model_dir, task, out, *extra, space=SPACE, trials=trials, seeds=seeds))


def _rows(out: Path) -> list[dict]:
    with open(out / "trials.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if k != "duration_s"} for r in csv.DictReader(fh)]


@ray_test
def test_ray_tune_with_one_worker_matches_the_local_tune(
    tiny_model_dir, toy_task_master, tmp_path, ray_local
):
    local, remote = tmp_path / "local", tmp_path / "ray"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray task with 1 CPU: the same float reductions, the same bits
    try:
        assert _tune(tiny_model_dir, toy_task_master, local, seeds=("1", "2")) == 0
    finally:
        torch.set_num_threads(threads)
    code = _tune(
        tiny_model_dir, toy_task_master, remote, "--executor", "ray", "--workers", "1", seeds=("1", "2")
    )
    assert code == 0

    rows = _rows(local)
    assert len(rows) == 3 and {r["state"] for r in rows} == {"complete"}
    assert len({r["lr"] for r in rows}) == 3  # three different trials
    assert _rows(remote) == rows  # same parameters, objectives per seed and means
    a, b = (json.loads((d / "tune.json").read_text()) for d in (local, remote))
    assert a["best"] == b["best"] and a["final"]["mean"] == b["final"]["mean"]
    assert (a["executor"], b["executor"]) == ("local", "ray")
    ca, cb = (json.loads((d / "best_config.json").read_text()) for d in (local, remote))
    assert {**ca, "out": ""} == {**cb, "out": ""}
    for seed in ("seed1", "seed2"):  # the final runs: the same numbers and learned tensors
        ra, rb = (json.loads((d / "final" / seed / "result.json").read_text()) for d in (local, remote))
        for key in ("metrics", "per_class", "val", "protocol"):
            assert ra[key] == rb[key], (seed, key)
        assert {**ra["tuning"], "study": ""} == {**rb["tuning"], "study": ""}
        ta = read_safetensors(local / "final" / seed / "class_embeddings.safetensors")[0]
        tb = read_safetensors(remote / "final" / seed / "class_embeddings.safetensors")[0]
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert (local / "table2.md").read_text() == (remote / "table2.md").read_text()
    assert (remote / "tune.png").read_bytes().startswith(b"\x89PNG")


@ray_test
def test_ray_tune_retries_a_killed_worker_and_resumes_after_a_dead_driver(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, monkeypatch, capsys
):
    import optuna

    from kmat.tools.ray_executor import KILL_ONCE_ENV

    out = tmp_path / "tune"
    assert _tune(tiny_model_dir, toy_task_master, out, "--executor", "ray", "--no-final", trials=1) == 0
    # a driver killed outright leaves the trials it had asked "running" in the study
    study = optuna.load_study(study_name="kmat-tune", storage=f"sqlite:///{out / 'optuna.db'}")
    study.ask()
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))  # the first trial run to start training is SIGKILLed
    code = _tune(tiny_model_dir, toy_task_master, out, "--executor", "ray", "--workers", "2", trials=3)
    assert marker.is_file(), "no worker was killed"
    assert code == 0, capsys.readouterr()
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["complete", "interrupted", "complete", "complete"]
    assert rows[2]["lr"] != rows[3]["lr"]  # two trials asked together: not the same point
    assert (out / "final" / "seed1" / "result.json").is_file()


@ray_test
def test_ray_tune_worker_lost_past_the_retries_fails_its_trial_only(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, monkeypatch, capsys
):
    from kmat.tools.ray_executor import KILL_ONCE_ENV

    out = tmp_path / "tune"
    monkeypatch.setenv(KILL_ONCE_ENV, str(tmp_path / "killed-once"))
    code = _tune(
        tiny_model_dir,
        toy_task_master,
        out,
        "--executor",
        "ray",
        "--workers",
        "1",
        "--max-retries",
        "0",
        "--no-final",
        trials=2,
    )
    assert code == 0, capsys.readouterr()
    rows = _rows(out)
    assert [r["state"] for r in rows] == ["failed", "complete"]
    assert "WorkerCrashedError" in rows[0]["error"] and rows[0]["objective"] == ""


@ray_test
def test_ctrl_c_on_a_ray_tune_interrupts_the_trials_in_flight(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, monkeypatch
):
    out = tmp_path / "tune"
    real_wait = ray_local.wait

    def interrupted_wait(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt  # Ctrl-C on the driver while the trials' runs are out

    monkeypatch.setattr(ray_local, "wait", interrupted_wait)
    args = ("--executor", "ray", "--workers", "2", "--no-final")
    assert _tune(tiny_model_dir, toy_task_master, out, *args, trials=2) == 130
    assert [r["state"] for r in _rows(out)] == ["interrupted", "interrupted"]
    monkeypatch.setattr(ray_local, "wait", real_wait)
    assert _tune(tiny_model_dir, toy_task_master, out, *args, trials=2) == 0
    assert [r["state"] for r in _rows(out)] == ["interrupted", "interrupted", "complete", "complete"]


def test_tune_ray_flags_need_the_ray_executor(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "tune"
    assert _tune(tiny_model_dir, toy_task_master, out, "--workers", "2") == 2
    assert "kmat: error: --workers: only with --executor ray\n" in capsys.readouterr().err
    assert not out.exists()


def test_tune_executor_ray_without_ray_is_one_line(
    tiny_model_dir, toy_task_master, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    out = tmp_path / "tune"
    assert _tune(tiny_model_dir, toy_task_master, out, "--executor", "ray") == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kmat: error: --executor ray: Ray is not installed")
    assert not out.exists()
