"""An output place that cannot be written (full disk, quota, read-only, forbidden, a file in the
way) ends `kmat train` / `kmat reproduce` in one `kmat: error:` line naming the path, and leaves
nothing half-written behind. Tests run as root (chmod stops nothing), so the faults are simulated:
``os.fsync`` / ``os.replace`` / ``os.open`` / ``os.mkdir`` fail for paths under the output folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cli_helpers import reproduce_argv, train_argv
from kmat.cli import main
from kmat.errors import OutputError
from kmat.utils.io import atomic_write_bytes


def _under(path: object, root: Path) -> bool:
    return isinstance(path, str | os.PathLike) and os.path.realpath(path).startswith(str(root.resolve()))


def disk_full(monkeypatch, root: Path, name: str = "", code: int = errno.ENOSPC) -> None:
    """Writing a file under ``root`` whose name contains ``name`` fails as on a full disk: the data
    reaches the temporary file, its ``fsync`` fails."""
    real = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if _under(path, root) and name in os.path.basename(path):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def read_only(monkeypatch, root: Path, code: int = errno.EROFS) -> None:
    """Nothing can be created under ``root`` (files opened for writing, folders)."""
    real_open, real_mkdir = os.open, os.mkdir
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def fake_open(path, flags, *args, **kwargs):  # noqa: ANN001, ANN202
        if flags & writing and _under(path, root):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if _under(path, root):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("kmat: error:")]
    assert len(errors) == 1, err
    return errors[0]


# ---------------------------------------------------------------- the atomic write helpers


@pytest.mark.parametrize(
    "where,code,words",
    [
        ("open", errno.EROFS, "read-only file system"),
        ("open", errno.EACCES, "permission denied"),
        ("fsync", errno.ENOSPC, "no space left"),
        ("fsync", errno.EDQUOT, "quota"),
        ("replace", errno.ENOSPC, "no space left"),
    ],
)
def test_atomic_write_failure_is_an_output_error_and_leaves_the_old_file(
    monkeypatch, tmp_path, where, code, words
):
    target = tmp_path / "out" / "result.json"
    target.parent.mkdir()
    target.write_bytes(b"old")
    if where == "open":
        read_only(monkeypatch, target.parent, code)
    elif where == "fsync":
        disk_full(monkeypatch, target.parent, code=code)
    else:
        real = os.replace

        def replace(src, dst, *a, **k):  # noqa: ANN001, ANN202
            if _under(dst, target.parent):
                raise OSError(code, os.strerror(code))
            return real(src, dst, *a, **k)

        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError) as info:
        atomic_write_bytes(target, b"new" * 1000)
    assert info.value.path == str(target) and words in info.value.reason
    assert str(info.value).startswith(f"{target}: cannot write")
    assert files_under(tmp_path) == ["out/result.json"] and target.read_bytes() == b"old"


def test_other_os_errors_are_not_output_errors(monkeypatch, tmp_path):
    disk_full(monkeypatch, tmp_path, code=errno.EIO)  # a failing disk is no choice of folder
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "x.json", b"{}")
    assert not isinstance(info.value, OutputError)
    assert files_under(tmp_path) == []


def test_a_file_in_the_way_of_the_folder(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(OutputError, match=r"f is a file, not a folder"):
        atomic_write_bytes(tmp_path / "f" / "sub" / "x.json", b"{}")
    assert (tmp_path / "f").read_text() == "mine"


# ---------------------------------------------------------------- kmat train


@pytest.mark.parametrize("under", [False, True])
def test_train_out_is_a_file_or_under_one(tiny_model_dir, toy_task_master, tmp_path, capsys, under):
    mine = tmp_path / "notes.txt"
    mine.write_text("precious")
    out = mine / "run" if under else mine
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="coop", epochs=1, shots=2)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"kmat: error: {out}: {mine if under else ''}".rstrip() + (" " if under else ""))
    assert (f"{mine} is a file, not a folder" if under else f"{out}: is a file, not a folder") in line
    assert "[--out]" in line
    assert mine.read_text() == "precious" and files_under(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("code,words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_train_read_only_out_fails_before_training(
    tiny_model_dir, toy_task_master, tmp_path, capsys, monkeypatch, code, words
):
    outs = tmp_path / "outs"
    read_only(monkeypatch, outs, code)
    import kmat.run.runner as runner

    def no_training(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("trained although the output place is read-only")

    monkeypatch.setattr(runner, "train", no_training)
    assert (
        main(train_argv(tiny_model_dir, toy_task_master, outs / "r", method="coop", epochs=1, shots=2)) == 2
    )
    line = one_error_line(capsys.readouterr().err)
    assert str(outs) in line and words in line
    assert not outs.exists()


@pytest.mark.parametrize("failing", ["fewshot_train.csv", "checkpoint.safetensors", "result.json"])
def test_train_full_disk_leaves_no_partial_run(
    tiny_model_dir, toy_task_master, tmp_path, capsys, monkeypatch, failing
):
    outs = tmp_path / "outs"
    out = outs / "r"
    disk_full(monkeypatch, outs, failing)
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="coop", epochs=1, shots=2)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"kmat: error: {out}: cannot write (no space left on the device)")
    assert failing in line and "left as it was" in line
    assert files_under(outs) == [] and list(outs.iterdir()) == []  # no staging folder, no temp file


def test_train_full_disk_keeps_the_previous_run(
    tiny_model_dir, toy_task_master, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "outs" / "r"
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="coop", epochs=1, shots=2)) == 0
    before = {p: (out / p).read_bytes() for p in files_under(out)}
    disk_full(monkeypatch, out.parent, "result.json")  # the last write: everything else was written
    capsys.readouterr()
    assert (
        main(
            train_argv(
                tiny_model_dir,
                toy_task_master,
                out,
                "--seed",
                "2",
                "--overwrite",
                method="coop",
                epochs=1,
                shots=2,
            )
        )
        == 2
    )
    assert "no space left" in one_error_line(capsys.readouterr().err)
    assert {p: (out / p).read_bytes() for p in files_under(out)} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["r"]


# ---------------------------------------------------------------- kmat reproduce


def test_reproduce_out_is_a_file(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("not a folder")
    assert (
        main(
            reproduce_argv(tiny_model_dir, toy_task_master, out, methods=["zeroshot"], seeds=[1, 2], shots=2)
        )
        == 2
    )
    line = one_error_line(capsys.readouterr().err)
    assert f"{out}: is a file, not a folder" in line
    assert out.read_text() == "not a folder"


def test_reproduce_read_only_out_stops_at_once(
    tiny_model_dir, toy_task_master, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "results"
    read_only(monkeypatch, out)
    assert (
        main(
            reproduce_argv(tiny_model_dir, toy_task_master, out, methods=["zeroshot"], seeds=[1, 2], shots=2)
        )
        == 2
    )
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert str(out) in line and "read-only" in line
    assert "running" not in captured.out  # no run was tried, none recorded as failed


def test_reproduce_full_disk_stops_the_grid_with_one_line(
    tiny_model_dir, toy_task_master, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "results"
    disk_full(monkeypatch, out / "runs")  # every file of every run, error.json included
    code = main(
        reproduce_argv(
            tiny_model_dir, toy_task_master, out, methods=["zeroshot", "coop"], seeds=[1, 2], shots=2
        )
    )
    captured = capsys.readouterr()
    assert code == 2
    line = one_error_line(captured.err)
    assert line.startswith(f"kmat: error: {out}: the grid stops") and "no space left" in line
    assert captured.out.count("running") == 1  # stopped after the first run, not one failure per run
    assert files_under(out) == []  # no half-written run, no temporary file


def test_reproduce_unwritable_error_json_is_logged_and_the_grid_goes_on(
    tiny_model_dir, toy_task, tmp_path, capsys, monkeypatch
):
    (toy_task / "descriptions.json").unlink()  # every kmat run fails before it writes anything
    out = tmp_path / "results"
    disk_full(monkeypatch, out, "error.json")
    code = main(reproduce_argv(tiny_model_dir, toy_task, out, methods=["kmat"], seeds=[1, 2], shots=2))
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert captured.out.count("FAILED") == 2  # both runs tried
    assert captured.err.count("is not recorded") == 2
    assert "2 run(s) failed" in captured.err
    assert not list(out.rglob("error.json")) and not list(out.rglob("*.tmp"))
