"""A run killed at any write leaves its folder as it was (the previous run, or nothing), and the
next run finishes it. The kill is real: ``KMAT_FAULT_KILL_AT_WRITE=N`` ends the process with
``os._exit(137)`` just before its N-th atomic write would rename the finished file."""

import json
import os
import subprocess
import sys

import pytest

from cli_helpers import train_argv


def _train(tiny_model_dir, task, out, env_extra, *extra):
    cmd = [
        sys.executable,
        "-m",
        "kmat",
        *train_argv(tiny_model_dir, task, out, *extra, method="coop", epochs=1),
    ]
    env = {**os.environ, **env_extra}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_kill_at_each_write_never_mixes_a_run_folder(tiny_model_dir, toy_task_master, tmp_path):
    out = tmp_path / "run"
    cache = {"KMAT_CACHE": str(tmp_path / "cache")}
    first = _train(tiny_model_dir, toy_task_master, out, cache, "--seed", "1")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    killed = 0
    for n in (1, 3, 6):  # a rerun with another seed into the same folder (--overwrite)
        proc = _train(
            tiny_model_dir,
            toy_task_master,
            out,
            {**cache, "KMAT_FAULT_KILL_AT_WRITE": str(n)},
            "--seed",
            "2",
            "--overwrite",
        )
        if proc.returncode == 137:
            killed += 1
            now = {p.name: p.read_bytes() for p in out.iterdir()}
            assert now == before, f"kill at write {n} changed the finished run folder"
        else:
            assert proc.returncode == 0, proc.stderr
    assert killed >= 2
    done = _train(tiny_model_dir, toy_task_master, out, cache, "--seed", "2", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "result.json").read_text())["seed"] == 2
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert leftovers == []  # the next run cleaned the half-built folder away
