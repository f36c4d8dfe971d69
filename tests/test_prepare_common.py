"""Shared preparer machinery: task definitions, path resolution, splits, options, overwrite, listing."""

import json

import pytest

from fake_raw import make_busi, write_image
from kmat.knowledge.descriptions import shipped_path, validate_descriptions
from kmat.tools.preparers import (
    PrepareError,
    dataset_names,
    format_task_list,
    list_tasks,
    load_definition,
    prepare_dataset,
    preparer_options,
    task_names,
)
from kmat.tools.preparers.common import Row, norm_label
from kmat.tools.preparers.pathindex import FileIndex
from kmat.tools.preparers.splits import assign_generated_splits, split_totals, target_table

PAPER = {
    "skin1": (("dermoscopy", "clinical_15cm"), (513, 91, 135), (501, 89, 132)),
    "skin2": (("dermoscopy", "clinical"), (413, 203, 395), (413, 203, 395)),
    "breast": (("mammography", "ultrasound"), (356, 76, 78), (389, 155, 236)),
    "chest": (("ct", "xray"), (10670, 3538, 1678), (4595, 923, 914)),
}


@pytest.mark.parametrize("name", list(PAPER))
def test_task_definitions_match_paper_and_descriptions(name):
    spec = load_definition(name)
    mods, hi, lo = PAPER[name]
    assert (spec["high_end"]["modality"], spec["low_end"]["modality"]) == mods
    assert tuple(spec["expected_counts"]["high_end"].values()) == hi
    assert tuple(spec["expected_counts"]["low_end"].values()) == lo
    assert set(spec["classnames"]) == set(spec["classes"])
    assert spec["licence"] and spec["split_provenance"]["high_end"] and spec["split_provenance"]["low_end"]
    desc = json.loads(shipped_path(name).read_text())
    validate_descriptions(desc, spec["classes"], list(mods), name)
    assert list(desc[mods[0]]) == spec["classes"]  # same class order as the shipped descriptions


def test_task_names_and_dataset_names():
    assert task_names() == ["skin1", "skin2", "breast", "chest"]
    assert set(dataset_names()) == {"derm7pt", "midas", "dmid", "busi", "cc_ccii", "chestxray", "imagefolder"}
    assert preparer_options("cc_ccii")["slice_policy"] == "lesion_slices"
    assert preparer_options("CXR_prashant268")["split"] == "generated"


def test_norm_label():
    assert norm_label(" Malignant -BCC ") == norm_label("malignant- bcc") == "malignant-bcc"


def test_path_index_tolerance(tmp_path):
    for rel in (
        "TIFF Images/TIFF Images/IMG001.tif",
        "images/NEL/Nel026.JPG",
        "a/x.jpeg",
        "b/y_cropped.jpg",
        "dup/one/z.png",
        "dup/two/z.png",
        "c/w.jpg",
        "c/w.jpeg",
    ):
        write_image(tmp_path / rel)
    idx = FileIndex(tmp_path)
    assert idx.resolve("TIFF_Images/IMG001.tif").path == "TIFF Images/TIFF Images/IMG001.tif"
    assert idx.resolve("tiff images/img001.TIFF").path == "TIFF Images/TIFF Images/IMG001.tif"
    assert idx.resolve("images/nel/NEL026.jpg").path == "images/NEL/Nel026.JPG"
    assert idx.resolve_name("x.jpg").path == "a/x.jpeg"
    assert idx.resolve_name("y.jpg").path is None
    assert idx.resolve_name("y.jpg", suffixes=("_cropped",)).path == "b/y_cropped.jpg"
    amb = idx.resolve_name("z.png")
    assert amb.path is None and amb.ambiguous and amb.candidates == ("dup/one/z.png", "dup/two/z.png")
    assert idx.resolve("c/w.jpg").path == "c/w.jpg"  # the exact name wins over a variant
    assert idx.resolve("c/W.JPG").path == "c/w.jpg"
    assert idx.resolve_name("nothing.png").path is None


def test_split_totals_and_target_table():
    assert split_totals(10, {"train": 0.7, "val": 0.15, "test": 0.15}) == {"train": 7, "val": 2, "test": 1}
    table = target_table({"a": 5, "b": 3, "c": 2}, {"train": 6, "val": 2, "test": 2})
    assert {c: sum(v.values()) for c, v in table.items()} == {"a": 5, "b": 3, "c": 2}
    assert {s: sum(table[c][s] for c in table) for s in ("train", "val", "test")} == {
        "train": 6,
        "val": 2,
        "test": 2,
    }


def _rows(n_patients=40, per=3, classes=("x", "y")):
    rows = []
    for p in range(n_patients):
        cls = classes[p % len(classes)]
        for k in range(1 + p % per):
            rows.append(Row(f"hi/{p}_{k}.png", cls, "hi", "d", f"P{p}", f"P{p}-L{k}"))
            rows.append(Row(f"lo/{p}_{k}.png", cls, "lo", "d", f"P{p}", f"P{p}-L{k}"))
    return rows


def test_generated_split_grouped_paired_deterministic():
    rows = _rows()
    got = assign_generated_splits(rows, ["x", "y"], 0, "ns", ratios={"train": 0.6, "val": 0.2, "test": 0.2})
    assert sum(got.values()) == len(rows) and min(got.values()) > 0
    by_group, by_pair = {}, {}
    for r in rows:
        assert by_group.setdefault(r.group_id, r.split) == r.split
        assert by_pair.setdefault(r.pair_id, r.split) == r.split
    for c in ("x", "y"):  # stratified: every class in every split
        assert {r.split for r in rows if r.label == c} == {"train", "val", "test"}
    again = _rows()
    assign_generated_splits(
        list(reversed(again)), ["x", "y"], 0, "ns", ratios={"train": 0.6, "val": 0.2, "test": 0.2}
    )
    assert [r.split for r in again] == [r.split for r in rows]  # independent of row order
    other = _rows()
    assign_generated_splits(other, ["x", "y"], 5, "ns", ratios={"train": 0.6, "val": 0.2, "test": 0.2})
    assert [r.split for r in other] != [r.split for r in rows]


def test_unknown_dataset_and_option(tmp_path):
    with pytest.raises(PrepareError, match=r"unknown dataset 'isic'.*derm7pt"):
        prepare_dataset("isic", tmp_path, tmp_path / "data")
    with pytest.raises(PrepareError, match=r"unknown option\(s\) \['colour'\] for preparer 'busi'"):
        prepare_dataset("busi", tmp_path, tmp_path / "data", colour="blue")
    with pytest.raises(PrepareError, match=r"raw folder .*nope does not exist"):
        prepare_dataset("busi", tmp_path / "nope", tmp_path / "data")


def test_written_once_unless_overwrite(tmp_path):
    busi = make_busi(tmp_path / "busi")
    out = tmp_path / "data"
    first = prepare_dataset("busi", busi["root"], out)
    manifest = first.modalities[0].manifest
    before = manifest.read_bytes()
    with pytest.raises(PrepareError, match=r"already exists with different content.*overwrite=True"):
        prepare_dataset("busi", busi["root"], out, seed=3)
    assert manifest.read_bytes() == before  # nothing half-written
    again = prepare_dataset("busi", busi["root"], out, seed=3, overwrite=True)
    assert manifest.read_bytes() != before
    spec = json.loads((out / "breast" / "task.json").read_text())
    assert spec["manifest_sha256"]["busi__ultrasound.csv"] == again.modalities[0].sha256
    assert spec["prepared"]["low_end"]["options"]["seed"] == 3


def test_list_tasks_and_checksum_state(tmp_path):
    busi = make_busi(tmp_path / "busi")
    out = tmp_path / "data"
    prepare_dataset("busi", busi["root"], out)
    rows = {t.task: t for t in list_tasks(out)}
    assert list(rows)[:4] == ["skin1", "skin2", "breast", "chest"]
    assert rows["breast"].folder == (out / "breast").resolve()
    assert rows["breast"].low.prepared and not rows["breast"].prepared
    assert (
        rows["breast"].low.counts["train"]
        + rows["breast"].low.counts["val"]
        + rows["breast"].low.counts["test"]
        == 26
    )
    assert rows["skin1"].high.state == "not prepared" and rows["skin1"].high.preparer == "midas"
    text = format_task_list(list(rows.values()))
    assert "breast" in text and "389/155/236" in text and "not prepared" in text
    manifest = out / "breast" / "busi__ultrasound.csv"
    manifest.write_text(manifest.read_text() + "extra.png,benign,train,ultrasound,busi,x,,benign\n")
    assert {t.task: t for t in list_tasks(out)}["breast"].low.state == "modified (checksum differs)"


def test_report_format_lists_counts_and_paper(tmp_path):
    busi = make_busi(tmp_path / "busi")
    text = prepare_dataset("busi", busi["root"], tmp_path / "data").format()
    assert "paper (Table 1)" in text and "389" in text and "busi__ultrasound.csv" in text
    assert "not loadable yet" in text


def test_hidden_and_resource_fork_files_ignored(tmp_path):
    busi = make_busi(tmp_path / "busi", counts={"benign": 2, "malignant": 2, "normal": 2})
    (busi["root"] / "benign" / "._benign (1).png").write_bytes(b"junk")
    (busi["root"] / "__MACOSX").mkdir()
    report = prepare_dataset("busi", busi["root"], tmp_path / "data")
    assert sum(report.modalities[0].total(s) for s in ("train", "val", "test")) == 6


def _fake(name, root):
    from fake_raw import make_cc_ccii, make_chestxray, make_derm7pt, make_dmid, make_midas

    makers = {
        "derm7pt": make_derm7pt,
        "midas": make_midas,
        "dmid": make_dmid,
        "busi": make_busi,
        "cc_ccii": make_cc_ccii,
        "chestxray": make_chestxray,
    }
    return makers[name](root)["root"]


@pytest.mark.parametrize("name", ["derm7pt", "midas", "dmid", "busi", "cc_ccii", "chestxray"])
def test_prepare_twice_gives_identical_bytes(tmp_path, name):
    raw = _fake(name, tmp_path / "raw")
    out = tmp_path / "data"
    report = prepare_dataset(name, raw, out)
    first = {p: p.read_bytes() for p in sorted(report.task_folder.iterdir())}
    prepare_dataset(name, raw, out)
    assert {p: p.read_bytes() for p in sorted(report.task_folder.iterdir())} == first
    spec = json.loads(report.task_json.read_text())
    for m in report.modalities:
        assert spec["manifest_sha256"][m.manifest.name] == m.sha256
        assert spec[m.role]["root"] == str(m.root)


def test_custom_ratios(tmp_path):
    busi = make_busi(tmp_path / "busi")
    report = prepare_dataset("busi", busi["root"], tmp_path / "data", ratios="2,1,1")
    m = report.modalities[0]
    assert [m.total(s) for s in ("train", "val", "test")] == [13, 7, 6]
    assert "ratios 0.500/0.250/0.250" in m.provenance
