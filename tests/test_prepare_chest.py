"""CC-CCII (CT) and prashant268 (X-ray) preparers: task chest."""

import pytest

from fake_raw import (
    assert_grouped,
    make_busi,
    make_cc_ccii,
    make_chestxray,
    read_manifest,
    split_counts,
)
from kmat.data.task import load_task
from kmat.tools.preparers import PrepareError, prepare_dataset


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    return make_cc_ccii(tmp_path_factory.mktemp("ccii"))


@pytest.fixture(scope="module")
def cxr(tmp_path_factory):
    return make_chestxray(tmp_path_factory.mktemp("cxr"))


def _ct_rows(out):
    return read_manifest(out / "chest" / "cc_ccii__ct.csv")


def test_lesion_slices_policy(ct, tmp_path):
    prepare_dataset("cc_ccii", ct["root"], tmp_path / "data")
    rows = _ct_rows(tmp_path / "data")
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    n_normal_scans = sum(1 for k in ct["scans"] if k[0] == "Normal")
    assert len(by_label["covid19"]) + len(by_label["common_pneumonia"]) == ct["lesions"]
    assert len(by_label["normal"]) == 10 * n_normal_scans  # middle 10 of each Normal scan
    assert any(r["path"].startswith("COVID19-1/NCP/") for r in rows)  # nested extraction found
    assert any(
        r["path"].endswith("0005.jpg") for r in by_label["common_pneumonia"]
    )  # .png listed, .jpg on disk
    assert {r["source_label"] for r in rows} == {"NCP", "CP", "Normal"}
    assert {r["group_id"] for r in by_label["covid19"]} == {f"NCP/{p}" for p in range(1, 7)}
    assert_grouped(rows)
    assert {r["split"] for r in rows} == {"train", "val", "test"}


@pytest.mark.parametrize("policy,k,per_scan", [("middle_k", 3, 3), ("all", 10, 12)])
def test_other_slice_policies(ct, tmp_path, policy, k, per_scan):
    prepare_dataset("cc_ccii", ct["root"], tmp_path / "data", slice_policy=policy, k=k)
    rows = _ct_rows(tmp_path / "data")
    assert len(rows) == per_scan * len(ct["scans"])
    if policy == "middle_k":
        names = {r["path"].rsplit("/", 1)[1][:4] for r in rows}
        assert names == {"0004", "0005", "0006"}
    assert_grouped(rows)


def test_exclude_scans(ct, tmp_path):
    prepare_dataset("cc_ccii", ct["root"], tmp_path / "data", slice_policy="all", exclude_scans=["NCP/1/10"])
    assert not any("/NCP/1/10/" in r["path"] for r in _ct_rows(tmp_path / "data"))


def test_missing_lesion_slice(tmp_path):
    raw = make_cc_ccii(tmp_path / "raw", patients=3, slices=8)
    (raw["root"] / "CP" / "1" / "10" / "0004.png").unlink()
    with pytest.raises(PrepareError, match=r"CP/1/10/0004.png"):
        prepare_dataset("cc_ccii", raw["root"], tmp_path / "data")
    report = prepare_dataset("cc_ccii", raw["root"], tmp_path / "data", skip_missing=True)
    assert [p.item for p in report.missing] == ["CP/1/10/0004.png"]
    assert (tmp_path / "data" / "chest" / "cc_ccii__ct.skipped.csv").is_file()


def test_cc_ccii_wrong_folder(tmp_path):
    busi = make_busi(tmp_path / "busi")
    with pytest.raises(PrepareError, match=r"CC-CCII"):
        prepare_dataset("cc_ccii", busi["root"], tmp_path / "data")


def test_lesion_policy_needs_the_csv(tmp_path):
    raw = make_cc_ccii(tmp_path / "raw", patients=3, slices=4)
    (raw["root"] / "lesions_slices.csv").unlink()
    with pytest.raises(PrepareError, match=r"lesions_slices.csv not found.*middle_k"):
        prepare_dataset("cc_ccii", raw["root"], tmp_path / "data")


def test_chestxray_pooled_and_resplit(cxr, tmp_path):
    prepare_dataset("chestxray", cxr["root"].parent, tmp_path / "data")
    rows = read_manifest(tmp_path / "data" / "chest" / "cxr_prashant268__xray.csv")
    total = sum(n for per in cxr["counts"].values() for n in per.values())
    assert len(rows) == total
    assert {r["label"] for r in rows} == {"covid19", "common_pneumonia", "normal"}
    assert {r["dataset"] for r in rows} == {"cxr_prashant268"}
    assert {r["path"].rsplit(".", 1)[1] for r in rows} == {"jpg", "jpeg", "png", "JPG"}
    assert len({r["group_id"] for r in rows}) == total  # repeated file names stay separate groups
    counts = split_counts(rows)
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0


def test_chestxray_kaggle_split(cxr, tmp_path):
    prepare_dataset("chestxray", cxr["root"], tmp_path / "data", split="kaggle")
    rows = read_manifest(tmp_path / "data" / "chest" / "cxr_prashant268__xray.csv")
    assert all(r["path"].split("/")[0] == r["split"] for r in rows)


def test_chestxray_unknown_class_folder(tmp_path):
    raw = make_chestxray(tmp_path / "cxr")
    (raw["root"] / "train" / "TUBERCULOSIS").mkdir()
    with pytest.raises(PrepareError, match=r"folder 'TUBERCULOSIS' is not a class"):
        prepare_dataset("chestxray", raw["root"], tmp_path / "data")


def test_chest_task_loads_after_both(ct, cxr, tmp_path):
    out = tmp_path / "data"
    assert not prepare_dataset("chestxray", cxr["root"], out).loadable
    report = prepare_dataset("cc_ccii", ct["root"], out)
    assert report.loadable
    task = load_task(out / "chest")
    assert task.classes == ["covid19", "common_pneumonia", "normal"]
    assert (task.high.name, task.low.name) == ("ct", "xray")
    assert task.high.dataset == "cc_ccii" and task.low.dataset == "cxr_prashant268"


def test_chestxray_wrong_folder(tmp_path):
    busi = make_busi(tmp_path / "busi")
    with pytest.raises(PrepareError, match=r"no train/ and test/ folders.*prashant268"):
        prepare_dataset("chestxray", busi["root"], tmp_path / "data")
