"""``kmat reproduce --executor ray`` against a real local Ray instance (started once for the module):
the same run folders, numbers and table as the local executor; a killed worker's run retried; an
interrupted grid resumed; a run that raises recorded; and one line without Ray."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import kmat.run.grid as grid_mod
from cli_helpers import reproduce_argv
from kmat.cli import main
from kmat.utils.io import read_safetensors

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'kmat[cluster]')"),
]
SETTING = "16shot-epochs=1"


def ray_test(fn):  # noqa: ANN001, ANN201
    for mark in needs_ray:
        fn = mark(fn)
    return fn


def _reproduce(tiny_model_dir, task, out, *extra, methods=("zeroshot", "kmat"), seeds=("1", "2")):
    return main(reproduce_argv(tiny_model_dir, task, out, *extra, methods=methods, seeds=seeds))


def _runs(out: Path) -> list[Path]:
    return sorted(p.parent for p in (out / "runs").rglob("result.json"))


def _leftovers(out: Path) -> list[str]:
    """Staging folders, swapped-out runs and lock files: none may stay after a grid."""
    return sorted(
        str(p.relative_to(out))
        for p in (out / "runs").rglob(".*")
        if p.name.endswith((".partial", ".old", ".lock"))
    )


@ray_test
def test_ray_grid_matches_the_local_grid(tiny_model_dir, toy_task_master, tmp_path, ray_local):
    local, remote = tmp_path / "local", tmp_path / "ray"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray task with 1 CPU: the same float reductions, the same bits
    try:
        assert _reproduce(tiny_model_dir, toy_task_master, local) == 0
    finally:
        torch.set_num_threads(threads)
    assert _reproduce(tiny_model_dir, toy_task_master, remote, "--executor", "ray", "--workers", "2") == 0
    runs = [p.relative_to(local) for p in _runs(local)]
    assert len(runs) == 4 and runs == [p.relative_to(remote) for p in _runs(remote)]
    for rel in runs:
        a = json.loads((local / rel / "result.json").read_text())
        b = json.loads((remote / rel / "result.json").read_text())
        for key in (
            "metrics",
            "per_class",
            "confusion",
            "n_test",
            "val",
            "method",
            "task",
            "seed",
            "backbone",
        ):
            assert a[key] == b[key], (rel, key)
        strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a["history"]]
        assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b["history"]]
        assert {k: v for k, v in a["config"].items() if k != "out"} == {
            k: v for k, v in b["config"].items() if k != "out"
        }
        for f in ("class_embeddings.safetensors", "checkpoint.safetensors"):
            ta, tb = read_safetensors(local / rel / f)[0], read_safetensors(remote / rel / f)[0]
            assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), (rel, f)
        for f in ("config.json", "fewshot_train.csv", "fewshot_val.csv"):
            assert (local / rel / f).read_bytes() == (remote / rel / f).read_bytes(), (rel, f)
        # the run's log is captured on the worker and written by the driver; the history, as locally
        rows = [(local / rel / "history.csv").read_text(), (remote / rel / "history.csv").read_text()]
        assert [len(r.splitlines()) for r in rows] == [len(a["history"]) + 1] * 2, rel
        logs = [(local / rel / "log.txt").read_text(), (remote / rel / "log.txt").read_text()]
        for text in logs:
            lines = text.splitlines()
            assert f"run {a['method']} on task" in lines[0] and "finished in" in lines[-1], rel
        configs = [[ln.split(": ", 1)[1] for ln in t.splitlines() if "method config:" in ln] for t in logs]
        assert configs[0] == configs[1] and len(configs[0]) == 1, rel
    assert (local / "table2.md").read_text() == (remote / "table2.md").read_text()
    assert _leftovers(remote) == []


@ray_test
def test_methods_with_a_head_and_a_fit_run_through_ray_as_locally(
    tiny_model_dir, toy_task_master, tmp_path, ray_local
):
    """Methods that fit before the loop and classify with a head (Tip-Adapter: a cache built in
    ``fit``; CoCoOp: per-image prompts) computed by Ray workers: the driver writes their
    head.safetensors, and the results are the local executor's."""
    local, remote = tmp_path / "local", tmp_path / "ray"
    methods = ("tip_adapter", "cocoop")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _reproduce(tiny_model_dir, toy_task_master, local, methods=methods, seeds=("1",)) == 0
    finally:
        torch.set_num_threads(threads)
    args = ("--executor", "ray", "--workers", "2")
    assert _reproduce(tiny_model_dir, toy_task_master, remote, *args, methods=methods, seeds=("1",)) == 0
    runs = [p.relative_to(local) for p in _runs(local)]
    assert len(runs) == 2 and runs == [p.relative_to(remote) for p in _runs(remote)]
    for rel in runs:
        a = json.loads((local / rel / "result.json").read_text())
        b = json.loads((remote / rel / "result.json").read_text())
        assert a["metrics"] == b["metrics"] and a.get("fit") == b.get("fit"), rel
        ha, hb = (
            read_safetensors(local / rel / "head.safetensors")[0],
            read_safetensors(remote / rel / "head.safetensors")[0],
        )
        assert ha.keys() == hb.keys() and ha and all(torch.equal(ha[k], hb[k]) for k in ha), rel
    assert _leftovers(remote) == []


@ray_test
def test_killed_worker_gets_its_run_retried(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, monkeypatch, capsys
):
    from kmat.tools.ray_executor import KILL_ONCE_ENV

    out = tmp_path / "rep"
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))  # the first run to start training SIGKILLs its worker
    code = _reproduce(tiny_model_dir, toy_task_master, out, "--executor", "ray", methods=("kmat",))
    assert marker.is_file(), "no worker was killed"
    assert code == 0, capsys.readouterr()
    assert len(_runs(out)) == 2 and not list((out / "runs").rglob("error.json"))
    assert "2 run(s) finished, 0 already done, 0 failed" in capsys.readouterr().out
    assert _leftovers(out) == []


@ray_test
def test_interrupted_ray_grid_keeps_finished_runs_and_resumes(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, monkeypatch, capsys
):
    out = tmp_path / "rep"
    real_write = grid_mod.write_run
    calls = {"n": 0}

    def interrupted(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C while the driver writes the second run
        return real_write(*a, **k)

    monkeypatch.setattr(grid_mod, "write_run", interrupted)
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--executor", "ray", methods=("kmat",)) == 130
    finished = _runs(out)
    assert len(finished) == 1 and _leftovers(out) == []
    mtime = (finished[0] / "result.json").stat().st_mtime_ns
    monkeypatch.setattr(grid_mod, "write_run", real_write)
    capsys.readouterr()
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--executor", "ray", methods=("kmat",)) == 0
    assert "1 run(s) finished, 1 already done" in capsys.readouterr().out
    assert len(_runs(out)) == 2 and (finished[0] / "result.json").stat().st_mtime_ns == mtime


@ray_test
def test_killed_worker_past_the_retries_is_a_recorded_failure(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, monkeypatch, capsys
):
    from kmat.tools.ray_executor import KILL_ONCE_ENV

    out = tmp_path / "rep"
    monkeypatch.setenv(KILL_ONCE_ENV, str(tmp_path / "killed-once"))
    code = _reproduce(
        tiny_model_dir, toy_task_master, out, "--executor", "ray", "--max-retries", "0", methods=("kmat",)
    )
    assert code == 1
    errors = list((out / "runs").rglob("error.json"))
    assert len(errors) == 1 and "WorkerCrashedError" in json.loads(errors[0].read_text())["error"]
    assert len(_runs(out)) == 1 and _leftovers(out) == []  # the other run finished; nothing half-written
    assert "1 run(s) finished, 0 already done, 1 failed" in capsys.readouterr().out


@ray_test
def test_ctrl_c_while_runs_are_out_cancels_them(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, monkeypatch, capsys
):
    out = tmp_path / "rep"
    real_wait = ray_local.wait

    def interrupted_wait(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt  # Ctrl-C on the driver while every run is still out

    monkeypatch.setattr(ray_local, "wait", interrupted_wait)
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--executor", "ray", methods=("kmat",)) == 130
    assert _runs(out) == [] and _leftovers(out) == []  # cancelled: nothing written, every lock released
    monkeypatch.setattr(ray_local, "wait", real_wait)
    capsys.readouterr()
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--executor", "ray", methods=("kmat",)) == 0
    assert "2 run(s) finished, 0 already done" in capsys.readouterr().out


@ray_test
def test_run_that_raises_on_a_worker_is_recorded(tiny_model_dir, toy_task, tmp_path, ray_local, capsys):
    bad = sorted((toy_task / "images" / "loscan").glob("*_test_*.png"))[0]
    bad.write_bytes(b"not an image")  # readable for the driver's checks, undecodable for the worker
    out = tmp_path / "rep"
    code = _reproduce(tiny_model_dir, toy_task, out, "--executor", "ray", methods=("kmat",), seeds=("1",))
    assert code == 1
    err = json.loads((out / f"runs/toy/kmat/{SETTING}/seed1/error.json").read_text())
    assert "ImageError" in err["error"] and bad.name in err["error"]
    assert "Traceback" in err["traceback"]
    assert not (out / f"runs/toy/kmat/{SETTING}/seed1/result.json").exists() and _leftovers(out) == []
    assert "1 run(s) failed" in capsys.readouterr().err


@ray_test
def test_feature_tasks_run_only_where_the_data_resource_is(
    tiny_model_dir, toy_task_master, tmp_path, ray_local, capsys
):
    """--data-resource NAME: the image-reading feature tasks ask for a sliver of NAME (so Ray puts
    them on the nodes that hold the datasets), the training runs do not; a cluster where no node
    offers NAME is one line before anything runs."""
    from kmat.tools.ray_executor import DATA_RESOURCE_SLIVER, RayExecutor, RayTasks

    pool = RayTasks(RayExecutor(data_resource="kmat_data"))
    try:
        assert pool.feature_options["resources"] == {"kmat_data": DATA_RESOURCE_SLIVER}
        assert "resources" not in pool.options
    finally:
        pool.close()
    out = tmp_path / "rep"
    args = ("--executor", "ray", "--data-resource", "kmat_data")
    assert _reproduce(tiny_model_dir, toy_task_master, out, *args, methods=("kmat",), seeds=("1",)) == 0
    assert len(_runs(out)) == 1
    capsys.readouterr()
    args = ("--executor", "ray", "--data-resource", "gpu_with_data")
    assert _reproduce(tiny_model_dir, toy_task_master, tmp_path / "b", *args, methods=("kmat",)) == 2
    err = capsys.readouterr().err
    assert "no node of the Ray cluster offers the resource 'gpu_with_data'" in err and "ray start" in err
    assert _runs(tmp_path / "b") == []


def test_executor_ray_without_ray_is_one_line(tiny_model_dir, toy_task_master, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--executor", "ray") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert (
        lines[0].startswith("kmat: error: --executor ray: Ray is not installed")
        and "kmat[cluster]" in lines[0]
    )
    assert "-o" not in lines[0]
    assert not (out / "runs").exists()


def test_ray_flags_need_the_ray_executor(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--gpus-per-run", "0.25") == 2
    assert "--gpus-per-run: only with --executor ray" in capsys.readouterr().err
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--data-resource", "kmat_data") == 2
    assert "--data-resource: only with --executor ray" in capsys.readouterr().err
    assert _reproduce(tiny_model_dir, toy_task_master, out, "--executor", "ray", "--workers", "0") == 2
    assert "kmat: error: --executor ray: 0 runs at a time: at least 1\n" in capsys.readouterr().err


def test_a_run_given_its_inputs_reads_no_file_of_the_task(backbone, toy_task, tmp_path):
    """What a Ray training task does: with the identity, descriptions and features computed ahead
    (by the driver and the feature tasks), the run needs neither the images nor the task folder, and
    its numbers are those of a run that reads them."""
    import shutil

    from kmat.data.task import load_task
    from kmat.run.config import RunConfig
    from kmat.run.runner import (
        RunInputs,
        compute_run,
        encode_splits,
        encode_views,
        read_descriptions,
        resolve_method_config,
        run_identity,
        views_needed,
    )

    task = load_task(toy_task)
    cfg = RunConfig(task=str(toy_task), out=str(tmp_path / "r"), method="kmat", shots=4, seed=3, device="cpu")
    cfg.options = {"epochs": 2}
    cfg.feature_cache = False
    want = compute_run(cfg, backbone=backbone, task=task)
    inputs = RunInputs(
        identity=run_identity(cfg, task, resolve_method_config(cfg, task), backbone),
        descriptions=read_descriptions(cfg, task),
        splits=encode_splits(cfg, task, backbone),
        views=encode_views(cfg, task, views_needed(cfg, task), backbone),
    )
    assert views_needed(cfg, task) == 2 and inputs.descriptions is not None
    shutil.rmtree(toy_task)  # images, CSVs, descriptions.json: all gone
    got = compute_run(cfg, backbone=backbone, task=task, inputs=inputs)
    assert got.result["metrics"] == want.result["metrics"] and got.identity == want.identity
    assert all(torch.equal(got.embeddings[k], want.embeddings[k]) for k in want.embeddings)
    assert all(torch.equal(got.state[k], want.state[k]) for k in want.state)


def test_a_data_resource_named_like_a_ray_resource_is_one_line(
    tiny_model_dir, toy_task_master, tmp_path, capsys
):
    """--data-resource CPU (one of Ray's own resources) is refused before Ray starts, never a traceback."""
    for name in ("CPU", "GPU", "memory"):
        args = ("--executor", "ray", "--data-resource", name)
        assert _reproduce(tiny_model_dir, toy_task_master, tmp_path / name, *args, methods=("kmat",)) == 2
        err = capsys.readouterr().err
        assert err.startswith("kmat: error:") and err.count("\n") == 1 and "custom" in err
