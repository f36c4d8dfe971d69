import csv
import json

import pytest

from kmat.data.task import TaskError, load_task
from kmat.knowledge.descriptions import load_descriptions, validate_descriptions


def _rewrite(path, fn):
    rows = list(csv.DictReader(open(path)))
    fields = list(rows[0].keys())
    rows = fn(rows)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def test_toy_task_loads(toy_task):
    task = load_task(toy_task)
    assert task.classes == ["normal", "benign", "malignant"]
    assert task.high.name == "hiscan" and task.low.name == "loscan"
    assert len(task.high.split("train")) == 18 and len(task.low.split("test")) == 9


def test_misspelt_class_names_file_and_line(toy_task):
    _rewrite(toy_task / "toy__loscan.csv", lambda r: [dict(r[0], label="malignnat")] + r[1:])
    with pytest.raises(TaskError) as err:
        load_task(toy_task)
    msg = str(err.value)
    assert "toy__loscan.csv:2" in msg and "malignnat" in msg and "did you mean 'malignant'" in msg


def test_missing_image_names_the_file(toy_task):
    victim = next((toy_task / "images" / "hiscan").glob("benign_test_*.png"))
    victim.unlink()
    with pytest.raises(TaskError) as err:
        load_task(toy_task)
    assert "image not found" in str(err.value) and victim.name in str(err.value)


def test_empty_split_is_reported(toy_task):
    _rewrite(toy_task / "toy__loscan.csv", lambda r: [x for x in r if x["split"] != "test"])
    with pytest.raises(TaskError, match=r"empty split.*'test'"):
        load_task(toy_task)


def test_class_without_training_images_is_reported(toy_task):
    _rewrite(
        toy_task / "toy__hiscan.csv",
        lambda r: [x for x in r if not (x["split"] == "train" and x["label"] == "benign")],
    )
    with pytest.raises(TaskError, match="benign"):
        load_task(toy_task)


def test_not_a_task_folder(tmp_path):
    with pytest.raises(TaskError, match="task.json missing"):
        load_task(tmp_path)


def test_descriptions_validation(toy_task):
    task = load_task(toy_task)
    d = load_descriptions(task)
    assert set(d) == {"hiscan", "loscan"} and all(len(v) >= 1 for v in d["hiscan"].values())
    broken = json.loads((toy_task / "descriptions.json").read_text())
    del broken["loscan"]["benign"]
    with pytest.raises(TaskError, match="loscan/benign: no descriptions"):
        validate_descriptions(broken, task.classes, ["hiscan", "loscan"], "descriptions.json")
    with pytest.raises(TaskError, match="at least 50"):
        validate_descriptions(
            json.loads((toy_task / "descriptions.json").read_text()),
            task.classes,
            ["hiscan", "loscan"],
            "descriptions.json",
            min_count=50,
        )


def test_missing_descriptions_file_is_a_clear_error(toy_task):
    (toy_task / "descriptions.json").unlink()
    task = load_task(toy_task)
    with pytest.raises(TaskError, match="no descriptions.json"):
        load_descriptions(task)


def test_unprepared_paper_task_says_how_to_prepare_it(tmp_path):
    from kmat.data.task import resolve_task

    with pytest.raises(TaskError, match="kmat prepare dmid .*kmat prepare busi"):
        resolve_task("breast", tmp_path)


def test_excel_bom_manifest_loads(toy_task):
    path = toy_task / "toy__hiscan.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's "CSV UTF-8"
    assert len(load_task(toy_task).high.split("train")) == 18


def test_latin1_manifest_names_the_file(toy_task):
    path = toy_task / "toy__hiscan.csv"
    path.write_bytes(path.read_bytes().replace(b"normal", "norm\xe4l".encode("latin-1"), 1))
    with pytest.raises(TaskError, match="toy__hiscan.csv: not UTF-8 text"):
        load_task(toy_task)


def test_repeated_image_is_refused_with_both_lines(toy_task):
    def repeat_as_test(rows):
        train = next(r for r in rows if r["split"] == "train")
        return [*rows, dict(train, split="test")]  # the same image in train and test: a leak

    _rewrite(toy_task / "toy__hiscan.csv", repeat_as_test)
    with pytest.raises(
        TaskError, match=r"toy__hiscan.csv:\d+: image .* is listed again \(first at line \d+\)"
    ):
        load_task(toy_task)


def test_class_missing_from_a_test_split_warns(toy_task):
    _rewrite(
        toy_task / "toy__loscan.csv",
        lambda r: [x for x in r if not (x["split"] == "test" and x["label"] == "benign")],
    )
    with pytest.warns(
        UserWarning, match=r"toy__loscan.csv: the test split has no image of class\(es\) \['benign'\]"
    ):
        load_task(toy_task)


@pytest.mark.parametrize(
    "edit,msg",
    [
        (lambda spec: [spec], "expected an object"),
        (lambda spec: {**spec, "classnames": ["a", "b", "c"]}, r"task.json: classnames: .*dictionary"),
        (
            lambda spec: {**spec, "high_end": {**spec["high_end"], "root": 5}},
            r"task.json: high_end.root: .*string, got 5",
        ),
        (
            lambda spec: {**spec, "low_end": {**spec["low_end"], "crop_border": -1}},
            r"task.json: low_end.crop_border: .*greater than or equal to 0, got -1",
        ),
        (
            lambda spec: {**spec, "high_end": {k: v for k, v in spec["high_end"].items() if k != "manifest"}},
            r"task.json: high_end.manifest: missing",
        ),
        (
            lambda spec: {**spec, "classes": ["a", "b", "a"]},
            r"task.json: classes: duplicate class keys \['a'\]",
        ),
        (lambda spec: {**spec, "classes": []}, r"task.json: classes: .*at least 1 item"),
    ],
)
def test_malformed_task_json_names_the_field(toy_task, edit, msg):
    tj = toy_task / "task.json"
    tj.write_text(json.dumps(edit(json.loads(tj.read_text()))))
    with pytest.raises(TaskError, match=msg):
        load_task(toy_task)
