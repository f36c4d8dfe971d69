"""The generic imagefolder preparer: shipped tasks, new tasks, split folders, aliases, excludes."""

import json

import pytest

from fake_raw import make_busi, make_dmid, read_manifest, write_image
from kmat.data.task import load_task
from kmat.tools.preparers import PrepareError, list_tasks, prepare_dataset


def test_busi_as_imagefolder_with_exclude(tmp_path):
    busi = make_busi(tmp_path / "busi")
    out = tmp_path / "data"
    report = prepare_dataset(
        "imagefolder", busi["root"], out, task="breast", modality="ultrasound", exclude=["*_mask*.png"]
    )
    rows = read_manifest(out / "breast" / "imagefolder__ultrasound.csv")
    assert len(rows) == sum(busi["counts"].values()) and not any("_mask" in r["path"] for r in rows)
    assert report.modalities[0].role == "low_end"
    spec = json.loads((out / "breast" / "task.json").read_text())
    assert spec["low_end"]["manifest"] == "imagefolder__ultrasound.csv"
    assert spec["low_end"]["display_name"] == "ultrasound"
    prepare_dataset("dmid", make_dmid(tmp_path / "dmid")["root"], out)
    task = load_task(out / "breast")  # the imagefolder modality survives the dmid preparation
    assert task.low.dataset == "imagefolder" and task.classes == ["normal", "benign", "malignant"]


def test_new_task_with_split_folders_and_aliases(tmp_path):
    hi, lo = tmp_path / "hi", tmp_path / "lo"
    for split, n in (("train", 4), ("Valid", 2), ("test", 2)):
        for cls in ("Cats", "dogs"):
            for i in range(n):
                write_image(hi / split / cls / f"{i}.png", i)
    for cls in ("Cats", "DOGS"):
        for i in range(10):
            write_image(lo / cls / "sub" / f"{i}.jpg", i)
    out = tmp_path / "data"
    prepare_dataset(
        "imagefolder",
        hi,
        out,
        task="pets",
        modality="photo",
        role="high",
        classes=["cat", "dog"],
        class_aliases={"Cats": "cat", "dogs": "dog"},
    )
    rows = read_manifest(out / "pets" / "imagefolder__photo.csv")
    assert {(r["path"].split("/")[0], r["split"]) for r in rows} == {
        ("train", "train"),
        ("Valid", "val"),
        ("test", "test"),
    }
    # the second modality reuses the task.json written by the first (classes, aliases are per modality)
    report = prepare_dataset(
        "imagefolder",
        lo,
        out,
        task="pets",
        modality="sketch",
        role="low",
        class_aliases={"cats": "cat", "dogs": "dog"},
        display_name="pencil sketch",
    )
    assert report.loadable
    task = load_task(out / "pets")
    assert task.classes == ["cat", "dog"] and task.low.display_name == "pencil sketch"
    # the low end is only evaluated: all of it is test by default
    assert len(task.low.samples) == 20 and {s.split for s in task.low.samples} == {"test"}
    assert "pets" in [t.task for t in list_tasks(out)]


def test_new_task_needs_classes(tmp_path):
    write_image(tmp_path / "raw" / "a" / "1.png")
    with pytest.raises(
        PrepareError, match=r"a new task needs its class keys \(classes\) and the role"
    ) as err:
        prepare_dataset("imagefolder", tmp_path / "raw", tmp_path / "data", task="new", modality="m")
    assert set(err.value.options) == {"classes", "role"}  # the command line adds their flags


def test_unknown_folder_and_unknown_modality(tmp_path):
    busi = make_busi(tmp_path / "busi", counts={"benign": 2, "malignant": 2, "normal": 2})
    write_image(busi["root"] / "cysts" / "1.png")
    with pytest.raises(PrepareError, match=r"folder 'cysts' is not a class.*class_aliases"):
        prepare_dataset("imagefolder", busi["root"], tmp_path / "data", task="breast", modality="ultrasound")
    with pytest.raises(PrepareError, match=r"no modality 'mri'"):
        prepare_dataset("imagefolder", busi["root"], tmp_path / "data", task="breast", modality="mri")
