"""A researcher's own class-folder dataset to a trained K-MaT run, offline, through the command line
(issue 14, section 1): prepare the high end and the low end, see what is missing, write template
descriptions, train, find the run marked template-only, evaluate it again and deploy it on the
labelled low-end class folders (CLI and Python)."""

import json

import pytest

from fake_raw import write_image
from kmat.cli import main

CLASSES = ("zero", "one", "two")


def _raw(root, n=4):
    """raw/sharp/<class>/*.png and raw/blurry/<class>/*.png, 16x16, distinct bytes."""
    for m, mod in enumerate(("sharp", "blurry")):
        for c, cls in enumerate(CLASSES):
            for i in range(n):
                write_image(root / mod / cls / f"{i}.png", 40 * c + 7 * i + 100 * m)
    return root


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def _prepare(capsys, raw, data, mod, *extra):
    flags = ("--raw", raw / mod, "--out", data, "--task", "digits", "--modality", mod)
    return _run(capsys, "prepare", "imagefolder", *flags, *extra)


@pytest.fixture()
def prepared(tmp_path, capsys):
    """Both modalities prepared with the documented commands; returns (data root, raw, outputs)."""
    raw, data = _raw(tmp_path / "raw"), tmp_path / "data"
    high = _prepare(capsys, raw, data, "sharp", "--role", "high", "--classes", *CLASSES)
    assert high[0] == 0, high[2]
    assert "not loadable yet" in high[1] and "--role low" in high[1]
    low = _prepare(capsys, raw, data, "blurry", "--role", "low")
    assert low[0] == 0, low[2]
    return data, raw, low[1]


def test_new_task_errors_name_the_flags(tmp_path, capsys):
    raw, data = _raw(tmp_path / "raw", n=2), tmp_path / "data"
    code, _, err = _prepare(capsys, raw, data, "sharp")
    assert code == 2 and "--classes CLASS" in err and "--role high|low" in err
    assert "classes=[" not in err and "role='high'" not in err  # no Python keyword syntax
    assert _prepare(capsys, raw, data, "sharp", "--role", "high", "--classes", *CLASSES)[0] == 0
    code, _, err = _prepare(capsys, raw, data, "blurry")  # the low end without its role
    assert code == 2
    assert "no modality 'blurry'" in err and "high-end 'sharp'" in err and "[--role low]" in err
    with pytest.raises(SystemExit):  # argparse: one usage line naming the choices
        _prepare(capsys, raw, data, "blurry", "--role", "middle")
    assert "invalid choice: 'middle' (choose from 'high', 'low'" in capsys.readouterr().err


def test_old_role_spelling_still_works(tmp_path, capsys):
    raw, data = _raw(tmp_path / "raw", n=2), tmp_path / "data"
    assert _prepare(capsys, raw, data, "sharp", "--role", "high_end", "--classes", *CLASSES)[0] == 0
    code, out, err = _prepare(capsys, raw, data, "blurry", "--role", "low_end")
    assert code == 0, err
    spec = json.loads((data / "digits" / "task.json").read_text())
    assert spec["high_end"]["modality"] == "sharp" and spec["low_end"]["modality"] == "blurry"


def test_low_end_is_all_test_by_default(prepared, tmp_path, capsys):
    data, raw, printed = prepared
    rows = (data / "digits" / "imagefolder__blurry.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 * len(CLASSES)
    assert {r.split(",")[2] for r in rows} == {"test"}
    assert "only evaluated, never trained on): all images test" in printed
    high = (data / "digits" / "imagefolder__sharp.csv").read_text()
    assert ",train," in high  # the high end keeps a generated train/val/test split
    # a small validation part on request
    code, out, err = _prepare(
        capsys, raw, data, "blurry", "--role", "low", "--low-val-fraction", "0.25", "--overwrite"
    )
    assert code == 0, err
    splits = [
        r.split(",")[2] for r in (data / "digits" / "imagefolder__blurry.csv").read_text().splitlines()[1:]
    ]
    assert splits.count("val") == 3 and splits.count("test") == 9 and "25% validation" in out
    code, _, err = _prepare(capsys, raw, data, "blurry", "--low-val-fraction", "1.5", "--overwrite")
    assert code == 2 and "--low-val-fraction" in err


def test_walk_to_a_template_only_run(prepared, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    data, _, printed = prepared
    folder = data / "digits"
    # prepared, but the default method cannot train yet: say what is missing and the command
    assert "NOT ready to train" in printed and f"kmat describe --stub --task {folder}" in printed
    code, out, _ = _run(capsys, "tasks", "--data-root", data)
    assert code == 0 and "[ready" not in out and "no descriptions.json" in out
    assert f"kmat describe --stub --task {folder}" in out

    code, out, err = _run(capsys, "describe", "--stub", "--task", folder)
    assert code == 0, err
    assert "TEMPLATE-ONLY" in out
    doc = json.loads((folder / "descriptions.json").read_text())
    assert "template-only" in doc["_template"]
    assert set(doc) == {"_template", "sharp", "blurry"}
    assert all(len(set(doc[m][c])) >= 5 for m in ("sharp", "blurry") for c in CLASSES)
    assert any("zero" in s for s in doc["blurry"]["zero"])
    before = (folder / "descriptions.json").read_bytes()
    code, _, err = _run(capsys, "describe", "--stub", "--task", folder)  # never overwritten silently
    assert code == 2 and "--overwrite" in err and (folder / "descriptions.json").read_bytes() == before

    code, out, _ = _run(capsys, "tasks", "--data-root", data)
    assert "[ready" in out and "TEMPLATE" in out

    run = tmp_path / "run"
    code, out, err = _run(
        capsys,
        "train",
        "--task",
        folder,
        "--method",
        "kmat",
        "--epochs",
        "1",
        "--backbone",
        f"local-dir:{tiny_model_dir}",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        run,
    )
    assert code == 0, err
    assert "template-only descriptions" in err  # warned at run time
    res = json.loads((run / "result.json").read_text())
    assert res["config"]["descriptions_template"] is True
    assert res["n_test"]["low"] == 4 * len(CLASSES)  # every low-end image evaluated

    # evaluated again from the folder, and deployed on the labelled low-end class folders: CLI ...
    code, out, err = _run(capsys, "evaluate", "--run", run, "--json")
    assert code == 0, err
    assert json.loads(out)["low"] == res["metrics"]["low"]
    _, raw, _ = prepared
    code, out, err = _run(
        capsys,
        "predict",
        "--run",
        run,
        "--images",
        raw / "blurry",
        "--device",
        "cpu",
        "--out",
        tmp_path / "p.csv",
    )
    assert code == 0, err
    scores = json.loads((tmp_path / "p.metrics.json").read_text())
    assert scores["n"] == 4 * len(CLASSES) and scores["confusion"] == res["confusion"]["low"]
    # ... and Python
    import kmat

    images = sorted((raw / "blurry").rglob("*.png"))
    preds = kmat.load_run(run, device="cpu").predict(images)
    assert preds.score([p.parent.name for p in images])["confusion"] == res["confusion"]["low"]


def test_real_descriptions_are_not_marked(prepared, capsys):
    """The marker follows the file: without '_template' the task is plainly ready."""
    data, _, _ = prepared
    folder = data / "digits"
    assert _run(capsys, "describe", "--stub", "--task", folder)[0] == 0
    doc = json.loads((folder / "descriptions.json").read_text())
    del doc["_template"]
    (folder / "descriptions.json").write_text(json.dumps(doc))
    code, out, _ = _run(capsys, "tasks", "--data-root", data)
    assert "[ready]" in out and "TEMPLATE" not in out
    code, out, _ = _run(capsys, "describe", "--show", folder, "--limit", "1")
    assert code == 0 and "TEMPLATE-ONLY" not in out
    from kmat.data.task import load_task
    from kmat.knowledge.descriptions import template_descriptions

    assert template_descriptions(load_task(folder)) is False
