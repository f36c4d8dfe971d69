"""MRA-MIDAS preparer (task skin1) on a fake download (release_midas.xlsx + raw_images/)."""

import json
import shutil

import pytest

from fake_raw import assert_grouped, assert_paired, make_midas, read_manifest, write_xlsx
from kmat.data.task import load_task
from kmat.tools.preparers import PrepareError, prepare_dataset

CLASSES = [
    "actinic_keratosis",
    "basal_cell_carcinoma",
    "melanoma",
    "melanocytic_nevus",
    "squamous_cell_carcinoma",
    "seborrheic_keratosis",
]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_midas(tmp_path_factory.mktemp("midas"))


def _counts(rows):
    out = {}
    for r in rows:
        out[r["label"]] = out.get(r["label"], 0) + 1
    return out


def test_rows_labels_grouping_and_pairing(raw, tmp_path):
    out = tmp_path / "data"
    report = prepare_dataset("midas", raw["root"], out)
    derm = read_manifest(out / "skin1" / "midas__dermoscopy.csv")
    clin = read_manifest(out / "skin1" / "midas__clinical_15cm.csv")
    assert _counts(derm) == raw["expected"]["dermoscopy"]
    assert _counts(clin) == raw["expected"]["clinical_15cm"]
    assert {r["modality"] for r in clin} == {"clinical_15cm"}
    # controls, unlabelled rows, out-of-set pathologies and virtual photos are dropped
    assert not {"3001", "3002", "3003", "3004", "3005", "3006", "3007"} & {r["group_id"] for r in derm + clin}
    # .jpeg and _cropped files on disk were matched to the sheet's .jpg names
    paths = [r["path"] for r in derm + clin]
    assert any(p.endswith(".jpeg") for p in paths) and any("_cropped" in p for p in paths)
    assert all((raw["root"] / p).is_file() for p in paths)
    assert_grouped(derm + clin)  # a patient is in one split, across both modalities
    assert assert_paired(derm, clin) == len(derm)
    assert {r["split"] for r in derm} == {"train", "val", "test"}
    notes = "\n".join(report.notes)
    assert "control lesion" in notes and "malignant- sccis" in notes


def test_load_task_and_task_json(raw, tmp_path):
    out = tmp_path / "data"
    report = prepare_dataset("midas", raw["root"], out)
    assert report.loadable
    task = load_task(out / "skin1")
    assert task.classes == CLASSES
    assert (task.high.name, task.low.name) == ("dermoscopy", "clinical_15cm")
    assert task.low.display_name == "clinical photograph"
    spec = json.loads((out / "skin1" / "task.json").read_text())
    assert "patient" in spec["split_provenance"]["high_end"]
    assert spec["prepared"]["high_end"]["options"]["fold_sccis_into_scc"] is False


def test_fold_sccis_into_scc(raw, tmp_path):
    out = tmp_path / "data"
    prepare_dataset("midas", raw["root"], out, fold_sccis_into_scc=True)
    derm = read_manifest(out / "skin1" / "midas__dermoscopy.csv")
    assert (
        _counts(derm)["squamous_cell_carcinoma"]
        == raw["expected"]["dermoscopy"]["squamous_cell_carcinoma"] + 2
    )
    spec = json.loads((out / "skin1" / "task.json").read_text())
    assert spec["high_end"]["label_map"]["malignant- sccis"] == "squamous_cell_carcinoma"


def test_custom_class_set(raw, tmp_path):
    out = tmp_path / "data"
    lmap = {
        "malignant- bcc": "basal_cell_carcinoma",
        "benign-melanocytic nevus": "melanocytic_nevus",
        "malignant- melanoma": "melanoma",
    }
    prepare_dataset("midas", raw["root"], out, label_map=lmap)
    task = load_task(out / "skin1")
    assert task.classes == ["basal_cell_carcinoma", "melanoma", "melanocytic_nevus"]


def test_class_order_as_comma_separated_string(raw, tmp_path):
    order = CLASSES[::-1]
    prepare_dataset("midas", raw["root"], tmp_path / "data", classes=",".join(order))
    assert load_task(tmp_path / "data" / "skin1").classes == order


def test_deterministic_and_seeded(raw, tmp_path):
    a = prepare_dataset("midas", raw["root"], tmp_path / "a").modalities[0].sha256
    b = prepare_dataset("midas", raw["root"], tmp_path / "b").modalities[0].sha256
    c = prepare_dataset("midas", raw["root"], tmp_path / "c", seed=1).modalities[0].sha256
    assert a == b != c


def test_unknown_pathology_is_an_error(tmp_path):
    raw = make_midas(tmp_path / "raw", patients_per_class=2)
    import openpyxl

    wb = openpyxl.load_workbook(raw["root"] / "release_midas.xlsx")
    rows = [list(r) for r in wb.active.iter_rows(values_only=True)]
    rows[1][6] = "malignant- unicorn"
    write_xlsx(raw["root"] / "release_midas.xlsx", rows)
    with pytest.raises(PrepareError, match=r"release_midas.xlsx:2: unknown midas_path 'malignant- unicorn'"):
        prepare_dataset("midas", raw["root"], tmp_path / "data")
    report = prepare_dataset("midas", raw["root"], tmp_path / "data", drop_unknown_labels=True)
    assert any("unicorn" in n for n in report.notes)


def test_ambiguous_file_is_listed_never_guessed(tmp_path):
    raw = make_midas(tmp_path / "raw", patients_per_class=2)
    src = raw["root"] / "raw_images" / "s-prd-400002.jpg"
    (raw["root"] / "copy").mkdir()
    shutil.copy(src, raw["root"] / "copy" / src.name)
    with pytest.raises(PrepareError, match="ambiguous") as err:
        prepare_dataset("midas", raw["root"], tmp_path / "data")
    assert "copy/s-prd-400002.jpg" in str(err.value) and "raw_images/s-prd-400002.jpg" in str(err.value)
    report = prepare_dataset("midas", raw["root"], tmp_path / "data", skip_missing=True)
    assert [p.item for p in report.ambiguous] == ["s-prd-400002.jpg"]
    assert (tmp_path / "data" / "skin1" / "midas__clinical_15cm.skipped.csv").is_file()


def test_wrong_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match=r"release_midas.xlsx.*not found.*MRA-MIDAS"):
        prepare_dataset("midas", tmp_path / "empty", tmp_path / "data")
