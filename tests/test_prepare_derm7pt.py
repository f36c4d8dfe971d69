"""Derm7pt preparer (task skin2) on a fake release_v0 folder."""

import json

import pytest

from fake_raw import (
    DERM7PT_DIAGNOSES,
    assert_paired,
    make_busi,
    make_derm7pt,
    read_manifest,
    write_csv,
)
from kmat.data.task import load_task
from kmat.tools.preparers import PrepareError, prepare_dataset


@pytest.fixture()
def raw(tmp_path):
    return make_derm7pt(tmp_path / "raw")


def test_official_split_labels_and_pairing(raw, tmp_path):
    out = tmp_path / "data"
    report = prepare_dataset("derm7pt", raw["root"], out)
    derm = read_manifest(out / "skin2" / "derm7pt__dermoscopy.csv")
    clin = read_manifest(out / "skin2" / "derm7pt__clinical.csv")
    assert len(derm) == len(clin) == len(raw["cases"]) == 31
    expected = {str(case): (cls, split) for case, cls, split in raw["cases"]}
    for rows, modality in ((derm, "dermoscopy"), (clin, "clinical")):
        for r in rows:
            assert (r["label"], r["split"]) == expected[r["group_id"]]
            assert r["modality"] == modality and r["dataset"] == "derm7pt" and r["pair_id"] == r["group_id"]
            assert (raw["root"] / r["path"]).is_file()  # mixed-case names resolved to real files
    assert assert_paired(derm, clin) == 31
    assert {r["source_label"] for r in derm} == {d for d, _, _ in DERM7PT_DIAGNOSES}
    m = report.modalities[0]
    assert m.counts["train"]["nevus"] == 3 and m.counts["excluded"]["basal_cell_carcinoma"] == 1
    assert m.expected == {"train": 413, "val": 203, "test": 395}
    assert "413" in report.format() and report.loadable


def test_task_json_and_load_task(raw, tmp_path):
    out = tmp_path / "data"
    prepare_dataset("derm7pt", raw["root"].parent, out)  # the parent of release_v0 works too
    spec = json.loads((out / "skin2" / "task.json").read_text())
    assert spec["high_end"]["root"] == str(raw["root"].resolve())
    assert set(spec["manifest_sha256"]) == {"derm7pt__dermoscopy.csv", "derm7pt__clinical.csv"}
    task = load_task(out / "skin2")
    assert task.classes == [
        "basal_cell_carcinoma",
        "nevus",
        "melanoma",
        "miscellaneous",
        "seborrheic_keratosis",
    ]
    assert (task.high.name, task.low.name) == ("dermoscopy", "clinical")
    assert task.low.display_name == "clinical photograph"
    assert len(task.high.split("train")) == 15 and len(task.low.split("test")) == 10


def test_idempotent(raw, tmp_path):
    out = tmp_path / "data"
    prepare_dataset("derm7pt", raw["root"], out)
    files = sorted((out / "skin2").iterdir())
    first = {p.name: p.read_bytes() for p in files}
    prepare_dataset("derm7pt", raw["root"], out)
    assert {p.name: p.read_bytes() for p in sorted((out / "skin2").iterdir())} == first


def test_wrong_folder_says_what_was_expected(tmp_path):
    busi = make_busi(tmp_path / "busi")
    with pytest.raises(PrepareError, match=r"meta/meta.csv not found.*Derm7pt release_v0"):
        prepare_dataset("derm7pt", busi["root"], tmp_path / "data")


def test_unknown_diagnosis_names_file_and_line(raw, tmp_path):
    meta = raw["root"] / "meta" / "meta.csv"
    text = meta.read_text().replace("clark nevus", "martian nevus", 1)
    meta.write_text(text)
    with pytest.raises(PrepareError) as err:
        prepare_dataset("derm7pt", raw["root"], tmp_path / "data")
    assert "meta.csv:9" in str(err.value) and "martian nevus" in str(err.value)


def test_missing_image_is_an_error_unless_skipped(raw, tmp_path):
    victim = next((raw["root"] / "images" / "Fbl").glob("*d.jpg"))
    victim.unlink()
    with pytest.raises(PrepareError, match=victim.stem) as err:
        prepare_dataset("derm7pt", raw["root"], tmp_path / "data")
    assert "skip_missing=True" in str(err.value)
    report = prepare_dataset("derm7pt", raw["root"], tmp_path / "data", skip_missing=True)
    assert len(report.missing) == 1
    skipped = tmp_path / "data" / "skin2" / "derm7pt__dermoscopy.skipped.csv"
    assert skipped.is_file() and victim.stem.lower() in skipped.read_text().lower()
    assert len(read_manifest(tmp_path / "data" / "skin2" / "derm7pt__dermoscopy.csv")) == 30
    assert not (tmp_path / "data" / "skin2" / "derm7pt__clinical.skipped.csv").exists()


def test_index_out_of_range(raw, tmp_path):
    write_csv(raw["root"] / "meta" / "test_indexes.csv", ["indexes"], [[0], [999]])
    with pytest.raises(PrepareError, match=r"test_indexes.csv:3: row number 999"):
        prepare_dataset("derm7pt", raw["root"], tmp_path / "data")
