"""A test image with the same bytes as a training image, under another name, is a leak (#15, A7)."""

from __future__ import annotations

import shutil

import pytest

from cli_helpers import train_argv
from kmat.cli import main
from kmat.data.fingerprint import check_content_leaks
from kmat.data.task import load_task
from kmat.errors import TaskError


def _copy_train_over_test(task_dir, modality: str) -> tuple[str, str]:
    images = task_dir / "images" / modality
    src = sorted(images.glob("*_train_*.png"))[0]
    dst = sorted(images.glob("*_test_*.png"))[0]
    shutil.copyfile(src, dst)
    return src.name, dst.name


def test_clean_task_has_no_leak(toy_task):
    check_content_leaks(load_task(toy_task))  # no error


def test_same_bytes_in_train_and_test_is_refused(toy_task):
    a, b = _copy_train_over_test(toy_task, "hiscan")
    with pytest.raises(TaskError) as info:
        check_content_leaks(load_task(toy_task))
    msg = str(info.value)
    assert a in msg and b in msg and "(test)" in msg and "toy__hiscan.csv" in msg


def test_a_copy_in_the_unused_low_end_train_split_is_no_leak(toy_task):
    _copy_train_over_test(toy_task, "loscan")  # no run trains on low-end images
    check_content_leaks(load_task(toy_task))


def test_train_stops_with_one_line_before_training(tiny_model_dir, toy_task, tmp_path, capsys):
    a, b = _copy_train_over_test(toy_task, "hiscan")
    out = tmp_path / "run"
    code = main(train_argv(tiny_model_dir, toy_task, out, method="coop", epochs=1, quiet=False))
    err = capsys.readouterr().err
    assert code == 2 and "kmat: error:" in err and a in err and b in err
    assert "Traceback" not in err
    assert not (out / "result.json").exists()
