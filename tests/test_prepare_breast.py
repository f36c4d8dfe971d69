"""DMID (mammography) and BUSI (ultrasound) preparers: task breast."""

import json

import pytest

from fake_raw import (
    assert_grouped,
    make_busi,
    make_derm7pt,
    make_dmid,
    read_manifest,
    split_counts,
    write_biomedcoop_split,
)
from kmat.data.images import load_image
from kmat.data.task import TaskError, load_task
from kmat.tools.preparers import PrepareError, list_tasks, prepare_dataset
from kmat.tools.preparers.splits import assign_generated_splits


def test_dmid_labels_severity_birads_and_skips(tmp_path):
    raw = make_dmid(tmp_path / "dmid")
    report = prepare_dataset("dmid", raw["root"], tmp_path / "data")
    rows = read_manifest(tmp_path / "data" / "breast" / "dmid__mammography.csv")
    got = {r["group_id"]: r["label"] for r in rows}
    assert got == raw["labels"]  # ids stripped, 'N ' -> normal, B+M rows -> malignant
    by_id = {r["group_id"]: r for r in rows}
    assert by_id["IMG015"]["label"] == "malignant" and by_id["IMG012"]["label"] == "benign"
    assert by_id["IMG009"]["source_label"] == "BIRADS 1 (report)"
    assert by_id["IMG001"]["path"] == "TIFF Images/IMG001.tif"
    assert [p.item for p in report.skipped] == ["IMG031"]  # BIRADS 4 stays unresolved
    skipped = tmp_path / "data" / "breast" / "dmid__mammography.skipped.csv"
    assert "IMG031" in skipped.read_text()
    assert not report.loadable  # BUSI not prepared yet
    assert load_image(raw["root"] / by_id["IMG003"]["path"]).mode == "RGB"  # 8-bit RGBA TIFF


@pytest.mark.parametrize("nested,underscore", [(True, False), (False, True)])
def test_dmid_folder_spellings(tmp_path, nested, underscore):
    raw = make_dmid(tmp_path / "dmid", nested=nested, underscore=underscore)
    prepare_dataset("dmid", raw["root"], tmp_path / "data")
    rows = read_manifest(tmp_path / "data" / "breast" / "dmid__mammography.csv")
    assert len(rows) == 30 and all((raw["root"] / r["path"]).is_file() for r in rows)


def test_dmid_unknown_classification(tmp_path):
    raw = make_dmid(tmp_path / "dmid")
    import openpyxl

    wb = openpyxl.load_workbook(raw["root"] / "Metadata.xlsx")
    ws = wb.active
    for row in ws.iter_rows():
        if row[0].value == "IMG002":
            row[4].value = "X"
    wb.save(raw["root"] / "Metadata.xlsx")
    with pytest.raises(PrepareError, match=r"Metadata.xlsx:\d+: unknown classification 'X' for IMG002"):
        prepare_dataset("dmid", raw["root"], tmp_path / "data")


def test_dmid_ids_differing_in_case_are_one_image(tmp_path):
    raw = make_dmid(tmp_path / "dmid")
    import openpyxl

    wb = openpyxl.load_workbook(raw["root"] / "Metadata.xlsx")
    wb.active.append(["img013", "MLOLT", "F", "SPIC", "M", 1, 2, 3])  # a second lesion row of IMG013
    wb.save(raw["root"] / "Metadata.xlsx")
    prepare_dataset("dmid", raw["root"], tmp_path / "data")  # not an 'ambiguous' error
    rows = read_manifest(tmp_path / "data" / "breast" / "dmid__mammography.csv")
    by_id = {r["group_id"]: r for r in rows}
    assert len(rows) == 30 and by_id["IMG013"]["label"] == "malignant"  # B + M rows -> max severity


def test_dmid_wrong_folder(tmp_path):
    raw = make_busi(tmp_path / "busi")
    with pytest.raises(PrepareError, match=r"Metadata.xlsx not found.*DMID"):
        prepare_dataset("dmid", raw["root"], tmp_path / "data")


def test_busi_masks_skipped_and_generated_split(tmp_path):
    raw = make_busi(tmp_path / "busi")
    prepare_dataset("busi", tmp_path / "busi", tmp_path / "data")  # the folder above Dataset_BUSI_with_GT
    rows = read_manifest(tmp_path / "data" / "breast" / "busi__ultrasound.csv")
    assert len(rows) == sum(raw["counts"].values())
    assert not any("_mask" in r["path"] for r in rows)
    assert rows[0]["path"].startswith(("benign/", "malignant/", "normal/"))
    assert_grouped(rows)
    assert {r["group_id"] for r in rows} >= {"benign (1)", "normal (6)"}


def test_busi_full_size_split_has_the_paper_totals():
    """780 images (437/210/133) give exactly 389/155/236, per class as in BiomedCoOp's file."""
    from kmat.tools.preparers.common import Row

    rows = [
        Row(f"{c}/{c} ({i}).png", c, "ultrasound", "busi", f"{c} ({i})")
        for c, n in (("benign", 437), ("malignant", 210), ("normal", 133))
        for i in range(n)
    ]
    got = assign_generated_splits(
        rows, ["normal", "benign", "malignant"], 0, "busi", totals={"train": 389, "val": 155, "test": 236}
    )
    assert got == {"train": 389, "val": 155, "test": 236}
    per = {(r.label, r.split) for r in rows}
    assert len(per) == 9
    count = {}
    for r in rows:
        count[(r.label, r.split)] = count.get((r.label, r.split), 0) + 1
    assert [count[("benign", s)] for s in ("train", "val", "test")] == [218, 87, 132]
    assert [count[("malignant", s)] for s in ("train", "val", "test")] == [105, 42, 63]
    assert [count[("normal", s)] for s in ("train", "val", "test")] == [66, 26, 41]


def test_busi_biomedcoop_split_import_remaps_by_name(tmp_path):
    raw = make_busi(tmp_path / "busi")
    assignment = {
        "train": [("benign", i) for i in range(1, 9)]
        + [("malignant", i) for i in range(1, 6)]
        + [("normal", i) for i in range(1, 4)],
        "val": [("benign", 9), ("malignant", 6), ("normal", 4)],
        "test": [("benign", i) for i in range(10, 13)] + [("malignant", 7), ("malignant", 8), ("normal", 5)],
    }
    split_file = write_biomedcoop_split(tmp_path / "split_BUSI.json", assignment)
    report = prepare_dataset("busi", raw["root"], tmp_path / "data", split_file=split_file)
    rows = {r["path"]: r for r in read_manifest(tmp_path / "data" / "breast" / "busi__ultrasound.csv")}
    for split, items in assignment.items():
        for cls, i in items:
            r = rows[f"{cls}/{cls} ({i}).png"]
            assert (r["label"], r["split"]) == (cls, split)  # BiomedCoOp index 0 = benign is not used
    assert rows["normal/normal (6).png"]["split"] == "excluded"
    assert "imported" in report.modalities[0].provenance


def test_busi_split_file_entry_missing(tmp_path):
    raw = make_busi(tmp_path / "busi")
    split_file = write_biomedcoop_split(tmp_path / "s.json", {"train": [("benign", 1), ("benign", 99)]})
    with pytest.raises(PrepareError, match=r"benign \(99\).png"):
        prepare_dataset("busi", raw["root"], tmp_path / "data", split_file=split_file)


def test_busi_empty_class(tmp_path):
    raw = make_busi(tmp_path / "busi", counts={"benign": 4, "malignant": 3, "normal": 0})
    (raw["root"] / "normal").mkdir()
    with pytest.raises(PrepareError, match=r"empty class\(es\) \['normal'\]"):
        prepare_dataset("busi", raw["root"], tmp_path / "data")


def test_busi_wrong_folder(tmp_path):
    raw = make_derm7pt(tmp_path / "d7")
    with pytest.raises(PrepareError, match=r"no BUSI class folders.*Dataset_BUSI_with_GT"):
        prepare_dataset("busi", raw["root"], tmp_path / "data")


def test_breast_task_loads_after_both(tmp_path):
    dmid, busi = make_dmid(tmp_path / "dmid"), make_busi(tmp_path / "busi")
    out = tmp_path / "data"
    prepare_dataset("busi", busi["root"], out)
    with pytest.raises(TaskError, match="manifest file not found"):
        load_task(out / "breast")
    status = {t.task: t for t in list_tasks(out)}["breast"]
    assert (status.high.state, status.low.state) == ("not prepared", "prepared")
    report = prepare_dataset("dmid", dmid["root"], out)
    assert report.loadable
    task = load_task(out / "breast")
    assert task.classes == ["normal", "benign", "malignant"]
    assert (task.high.name, task.low.name) == ("mammography", "ultrasound")
    spec = json.loads((out / "breast" / "task.json").read_text())
    assert set(spec["manifest_sha256"]) == {"dmid__mammography.csv", "busi__ultrasound.csv"}
    assert spec["low_end"]["root"] == str(busi["root"].resolve())
    status = {t.task: t for t in list_tasks(out)}["breast"]
    assert status.prepared and status.high.counts == split_counts(
        read_manifest(out / "breast" / "dmid__mammography.csv")
    )


def test_dmid_dicom_images(tmp_path):
    raw = make_dmid(tmp_path / "dmid")
    for tif in (raw["root"] / "TIFF Images").glob("*.tif"):
        dcm = raw["root"] / "DICOM Images" / (tif.stem + ".dcm")
        dcm.parent.mkdir(exist_ok=True)
        dcm.write_bytes(b"\0" * 128 + b"DICM")
    prepare_dataset("dmid", raw["root"], tmp_path / "data", image_format="dicom")
    rows = read_manifest(tmp_path / "data" / "breast" / "dmid__mammography.csv")
    assert len(rows) == 30 and all(
        r["path"].startswith("DICOM Images/") and r["path"].endswith(".dcm") for r in rows
    )
