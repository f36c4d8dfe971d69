"""`kmat predict` on bad images and bad output paths: bad images are skipped and each named (or,
with --strict, all named in one error), never a traceback; --out that is a folder, lies under a
file, or cannot be written is one `kmat: error:` line and no CSV."""

from __future__ import annotations

import csv
import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import toy_run_config
from kmat.cli import main
from kmat.data.images import load_image
from kmat.data.task import load_task
from kmat.errors import ImageError
from kmat.run.runner import run


def _nan_tiff(path: Path) -> None:
    arr = np.full((40, 40), np.nan, dtype=np.float32)
    arr[:5] = 1.0  # mostly NaN: min-max scaling would quietly give a black picture
    Image.fromarray(arr, mode="F").save(path)


BAD = {  # name -> writer, given a good PNG's bytes
    "corrupt.png": lambda good: good[:16] + bytes(range(256)) * 4,
    "truncated.png": lambda good: good[: len(good) // 2],
    "empty.jpg": lambda good: b"",
    "notes.png": lambda good: b"just some text, not an image\n",
}


def _write_bad(folder: Path, good: bytes) -> list[Path]:
    paths = []
    for name, make in BAD.items():
        (folder / name).write_bytes(make(good))
        paths.append(folder / name)
    _nan_tiff(folder / "nan.tif")
    paths.append(folder / "nan.tif")
    return paths


@pytest.fixture(scope="module")
def trained_run(backbone, tiny_model_dir, toy_task_master, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict_faults") / "run"
    run(
        toy_run_config(toy_task_master, out, tiny_model_dir, method="coop"),
        backbone=backbone,
    )
    return out


@pytest.fixture()
def good_images(toy_task_master, tmp_path) -> list[Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    samples = load_task(toy_task_master).low.split("test")[:3]
    out = []
    for i, s in enumerate(samples):
        out.append(folder / f"good{i}{s.path.suffix}")
        shutil.copy(s.path, out[-1])
    return out


def _predict(run_dir, *extra):
    return main(["predict", "--run", str(run_dir), "--device", "cpu", *map(str, extra)])


def _errors(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("kmat: error:")]


# ---------------------------------------------------------------- bad images


@pytest.mark.parametrize("name", [*BAD, "nan.tif"])
def test_bad_image_is_an_image_error_naming_the_file(tmp_path, good_images, name):
    _write_bad(tmp_path, good_images[0].read_bytes())
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / name)
    assert str(info.value).startswith(f"{tmp_path / name}: ")
    if name == "nan.tif":
        assert "NaN or infinite" in str(info.value)


def test_finite_float_tiff_still_loads(tmp_path):
    arr = np.linspace(-1.0, 3.0, 40 * 40, dtype=np.float32).reshape(40, 40)
    Image.fromarray(arr, mode="F").save(tmp_path / "ok.tif")
    pixels = np.asarray(load_image(tmp_path / "ok.tif"))
    assert pixels.min() == 0 and pixels.max() == 255


def test_bad_images_are_skipped_and_each_named(trained_run, good_images, tmp_path, capsys):
    bad = _write_bad(good_images[0].parent, good_images[0].read_bytes())
    csv_path = tmp_path / "preds.csv"
    assert _predict(trained_run, "--images", good_images[0].parent, "--out", csv_path) == 0
    captured = capsys.readouterr()
    assert _errors(captured.err) == []
    warnings = [line for line in captured.err.splitlines() if line.startswith("kmat: warning:")]
    assert len(warnings) == len(bad)
    for p in bad:
        assert sum(line.startswith(f"kmat: warning: {p}: skipped: ") for line in warnings) == 1
    rows = list(csv.DictReader(open(csv_path)))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in good_images)
    assert f"{len(bad)} image(s) skipped" in captured.out


def test_strict_names_every_bad_image_and_writes_nothing(trained_run, good_images, tmp_path, capsys):
    bad = _write_bad(good_images[0].parent, good_images[0].read_bytes())
    csv_path = tmp_path / "preds.csv"
    assert _predict(trained_run, "--images", good_images[0].parent, "--out", csv_path, "--strict") == 2
    (line,) = _errors(capsys.readouterr().err)
    assert f"{len(bad)} of {len(bad) + len(good_images)} image(s) cannot be used" in line
    assert all(str(p) in line for p in bad) and not any(str(p) in line for p in good_images)
    assert not csv_path.exists() and list(tmp_path.glob(".preds.csv*")) == []


def test_nothing_predictable_exits_1_and_writes_nothing(trained_run, good_images, tmp_path, capsys):
    folder = tmp_path / "only_bad"
    folder.mkdir()
    bad = _write_bad(folder, good_images[0].read_bytes())
    csv_path = tmp_path / "preds.csv"
    assert _predict(trained_run, "--images", folder, "--out", csv_path) == 1
    err = capsys.readouterr().err
    (line,) = _errors(err)
    assert f"none of the {len(bad)} image(s) could be used" in line
    assert err.count("kmat: warning:") == len(bad)
    assert not csv_path.exists()


# ---------------------------------------------------------------- --out


@pytest.mark.parametrize("kind", ["folder", "under_file"])
def test_predict_out_folder_or_under_a_file_is_refused_first(
    trained_run, good_images, tmp_path, capsys, kind
):
    if kind == "folder":
        out = tmp_path / "existing"
        out.mkdir()
        want = f"kmat: error: {out}: is a folder"
    else:
        (tmp_path / "f").write_text("mine")
        out = tmp_path / "f" / "preds.csv"
        want = f"kmat: error: {out}: {tmp_path / 'f'} is a file, not a folder"
    assert _predict(trained_run, "--images", good_images[0].parent, "--out", out) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert line.startswith(want)
    if kind == "folder":
        assert list(out.iterdir()) == []
    else:
        assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only")])
def test_predict_unwritable_out_is_one_line_and_no_partial_csv(
    trained_run, good_images, tmp_path, capsys, monkeypatch, code, words
):
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    csv_path = out_dir / "preds.csv"
    real_replace = os.replace

    def replace(src, dst, *a, **k):  # noqa: ANN001, ANN202
        if str(dst) == str(csv_path):
            raise OSError(code, os.strerror(code))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    assert _predict(trained_run, "--images", good_images[0].parent, "--out", csv_path) == 2
    (line,) = _errors(capsys.readouterr().err)
    assert line.startswith(f"kmat: error: {csv_path}: cannot write") and words in line
    assert list(out_dir.iterdir()) == []


def test_pillow_warnings_name_the_image(tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    from kmat.data.images import load_image

    path = tmp_path / "large.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # 64 pixels: Pillow warns (over 2x: error)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_image(path)
        load_image(path)
    mine = [str(w.message) for w in caught if str(path) in str(w.message)]
    assert len(mine) == 1, [str(w.message) for w in caught]  # named, and once per file


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_a_damaged_head_is_one_line_naming_the_file(
    damage, backbone, tiny_model_dir, toy_task_master, tmp_path, capsys
):
    """A method that classifies with its head (Tip-Adapter's cache): a damaged or missing
    head.safetensors stops kmat predict and kmat evaluate with one line naming what to do, never
    a prediction made without it."""
    out = tmp_path / "tip"
    run(toy_run_config(toy_task_master, out, tiny_model_dir, method="tip_adapter"), backbone=backbone)
    head = out / "head.safetensors"
    data = head.read_bytes()
    if damage == "flipped":  # one byte of a tensor: the recorded checksum no longer matches
        head.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    elif damage == "truncated":
        head.write_bytes(data[: len(data) // 2])
    else:
        head.unlink()
    image = load_task(toy_task_master).low.split("test")[0].path
    capsys.readouterr()
    assert main(["predict", "--run", str(out), "--images", str(image), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "train the run again" in lines[0], err
    assert main(["evaluate", "--run", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "train the run again" in err, err
