"""Two kmat processes on one output folder never write the same run (issue #15, C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cli_helpers import reproduce_argv, train_argv
from kmat.cli import main
from kmat.errors import RunBusyError
from kmat.run.layout import RunLayout
from kmat.run.lock import run_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs are locked with flock (POSIX)")

SETTING = "16shot-epochs=1"


def test_a_run_held_by_another_process_is_left_to_it(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "rep"
    held = out / "runs" / "toy" / "coop" / SETTING / "seed1"
    with run_lock(held):  # as another kmat process would hold it while it trains
        assert (
            main(reproduce_argv(tiny_model_dir, toy_task, out, methods=["coop"], seeds=[1, 2], quiet=False))
            == 0
        )
    got = capsys.readouterr()
    assert "busy     toy/coop/16shot-epochs=1/seed1" in got.out
    assert "1 left to another process" in got.out
    assert "not in these tables yet" in got.err
    assert not RunLayout.of(held).exists()  # not written by this process
    assert RunLayout.of(held.with_name("seed2")).exists()
    assert not RunLayout.of(held).lock_file.exists()  # released and removed
    assert (
        main(reproduce_argv(tiny_model_dir, toy_task, out, methods=["coop"], seeds=[1, 2], quiet=False)) == 0
    )  # the lock is free again: runs now
    assert RunLayout.of(held).exists()


def test_train_into_a_busy_folder_is_one_line(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(out):
        code = main(train_argv(tiny_model_dir, toy_task, out, method="zeroshot", quiet=False))
    err = capsys.readouterr().err
    assert code == 2
    assert "kmat: error:" in err and "another kmat process is writing this run" in err
    assert "Traceback" not in err


def test_the_lock_is_exclusive_and_released(tmp_path):
    folder = tmp_path / "seed1"
    with run_lock(folder):
        with pytest.raises(RunBusyError, match="another kmat process"), run_lock(folder):
            pass
    with run_lock(folder):  # free again after release
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "seed1"
    code = textwrap.dedent(
        f"""
        import sys, time
        from kmat.run.lock import run_lock
        with run_lock({str(folder)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError), run_lock(folder):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops a dead process's flock at once; allow for a slow reap
        try:
            with run_lock(folder):
                break
        except RunBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
