"""`kmat predict`: deploy a run's learned low-end prompts on new images."""

import csv
import json

import pytest

from cli_helpers import toy_run_config
from kmat.cli import main
from kmat.data.task import load_task
from kmat.run.predict import predict_images
from kmat.run.runner import run


def _confusion(samples, preds, classes) -> list[list[int]]:
    """The confusion matrix (rows: true class) of predictions of the test ``samples``, in order."""
    cm = [[0] * len(classes) for _ in classes]
    for s, p in zip(samples, preds, strict=True):
        cm[s.label][classes.index(p.label)] += 1
    return cm


def test_predictions_match_the_runs_evaluation(backbone, tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "run"
    res = run(
        toy_run_config(toy_task_master, out, tiny_model_dir, options={"epochs": 2}),
        backbone=backbone,
    )
    samples = load_task(toy_task_master).low.split("test")
    preds = predict_images(out, [s.path for s in samples], role="low", backbone=backbone)
    classes = res["config"]["classes"]
    cm = _confusion(samples, preds, classes)
    for p in preds:
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert cm == res["confusion"]["low"]  # the same decisions as the run's own low-end evaluation
    csv_path = tmp_path / "preds.csv"
    folder = samples[0].path.parent
    assert (
        main(
            ["predict", "--run", str(out), "--images", str(folder), "--out", str(csv_path), "--device", "cpu"]
        )
        == 0
    )
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == len(list(folder.glob("*.png"))) and set(rows[0]) == {
        "path",
        "prediction",
        "p_normal",
        "p_benign",
        "p_malignant",
    }


def test_predict_errors(tmp_path, capsys):
    assert main(["predict", "--run", str(tmp_path), "--images", str(tmp_path)]) == 2
    assert "result.json" in capsys.readouterr().err
    from safetensors.torch import save_file

    (tmp_path / "result.json").write_text(json.dumps({}))
    assert main(["predict", "--run", str(tmp_path), "--images", str(tmp_path)]) == 2
    assert "not a kmat result" in capsys.readouterr().err
    (tmp_path / "result.json").write_text(json.dumps({"metrics": {}}))
    (tmp_path / "class_embeddings.safetensors").write_bytes(b"")
    assert main(["predict", "--run", str(tmp_path), "--images", str(tmp_path)]) == 2
    assert "unreadable" in capsys.readouterr().err
    import torch

    save_file(
        {"high": torch.zeros(3, 4), "low": torch.zeros(3, 4)}, str(tmp_path / "class_embeddings.safetensors")
    )
    assert main(["predict", "--run", str(tmp_path), "--images", str(tmp_path / "nope.png")]) == 2
    assert "no such image" in capsys.readouterr().err


def test_per_image_prompt_methods_predict_as_they_evaluate(
    backbone, tiny_model_dir, toy_task_master, tmp_path
):
    """CoCoOp builds a new image's prompts from the saved context and meta-net (head.safetensors)."""
    out = tmp_path / "cocoop"
    run(
        toy_run_config(toy_task_master, out, tiny_model_dir, method="cocoop", shots=1),
        backbone=backbone,
    )
    assert (out / "head.safetensors").is_file()
    samples = load_task(toy_task_master).low.split("test")
    preds = predict_images(out, [s.path for s in samples], backbone=backbone)
    res = json.loads((out / "result.json").read_text())
    classes = res["config"]["classes"]
    cm = _confusion(samples, preds, classes)
    assert cm == res["confusion"]["low"]
    (out / "head.safetensors").unlink()  # without its head, a CoCoOp run cannot classify
    with pytest.raises(ValueError, match="head"):
        predict_images(out, [samples[0].path], backbone=backbone)


def test_a_labelled_class_folder_is_scored(backbone, tiny_model_dir, toy_task_master, tmp_path, capsys):
    """Images under FOLDER/<class>/ are scored: the same confusion matrix as the run's evaluation."""
    import shutil

    res = run(toy_run_config(toy_task_master, tmp_path / "run", tiny_model_dir), backbone=backbone)
    task = load_task(toy_task_master)
    classes = res["config"]["classes"]
    lab = tmp_path / "labelled"
    for i, s in enumerate(task.low.split("test")):
        dest = lab / classes[s.label] / f"{i:03d}{s.path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, dest)
    (lab / "unsorted.png").write_bytes((lab / classes[0] / "000.png").read_bytes())  # no class: not scored
    out_csv = tmp_path / "p.csv"
    argv = ["predict", "--run", str(tmp_path / "run"), "--images", str(lab), "--out", str(out_csv)]
    assert main([*argv, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    scores = json.loads((tmp_path / "p.metrics.json").read_text())
    assert scores["confusion"] == res["confusion"]["low"]
    assert scores["acc"] == pytest.approx(res["metrics"]["low"]["acc"], abs=1e-3)
    assert scores["n"] == len(task.low.split("test"))
    assert "1 image(s) without a label not scored" in printed and "rows: true" in printed
    rows = list(csv.DictReader(open(out_csv)))
    assert {r["label"] for r in rows} == set(classes) | {""}


def test_labels_from_a_csv_and_its_errors(backbone, tiny_model_dir, toy_task_master, tmp_path, capsys):
    res = run(toy_run_config(toy_task_master, tmp_path / "run", tiny_model_dir), backbone=backbone)
    samples = load_task(toy_task_master).low.split("test")
    classes = res["config"]["classes"]
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{s.path},{classes[s.label]}\n" for s in samples))
    folder = samples[0].path.parent
    argv = ["predict", "--run", str(tmp_path / "run"), "--images", str(folder), "--device", "cpu"]
    assert main([*argv, "--labels", str(labels)]) == 0
    out = capsys.readouterr().out
    acc = res["metrics"]["low"]["acc"]
    assert f"accuracy {acc:.2f}%" in out
    labels.write_text(f"path,label\n{samples[0].path},not_a_class\n")
    assert main([*argv, "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "'not_a_class' is not a class" in err
    labels.write_text("file,class\nx.png,normal\n")
    assert main([*argv, "--labels", str(labels)]) == 2
    assert "'path' and 'label'" in capsys.readouterr().err


def test_a_run_of_an_unregistered_method_predicts_with_its_class_embeddings(
    backbone, tiny_model_dir, toy_task_master, tmp_path
):
    """A user's prompt learner, registered in the process that trained it, is deployed by another
    that does not know it (``kmat predict``): its class embeddings are all it needs."""
    import torch.nn.functional as F
    from torch import nn

    from kmat.methods import register, unregister
    from kmat.methods.base import Method, cross_entropy

    class Shifted(Method):
        name = "user_shifted"

        def __init__(self, ctx, cfg):
            super().__init__(ctx, cfg)
            self.shift = nn.Parameter(torch.zeros(ctx.backbone.output_dim))

        def _t(self):
            return F.normalize(self.ctx.zeroshot_embeddings() + self.shift, dim=-1)

        def loss(self, feats, labels):
            ce = cross_entropy(self.logit_scale * feats @ self._t().T, labels)
            return {"ce": ce, "total": ce}

        def class_embeddings(self):
            t = self._t().detach()
            return {"high": t, "low": t}

    import torch

    register(Shifted)
    try:
        res = run(
            toy_run_config(toy_task_master, tmp_path / "run", tiny_model_dir, method="user_shifted"),
            backbone=backbone,
        )
    finally:
        unregister("user_shifted")
    samples = load_task(toy_task_master).low.split("test")
    preds = predict_images(tmp_path / "run", [s.path for s in samples], backbone=backbone)
    classes = res["config"]["classes"]
    cm = _confusion(samples, preds, classes)
    assert cm == res["confusion"]["low"]
    # a method that needs its code (a head) cannot be deployed without it
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "run" / "head.safetensors"))
    with pytest.raises(ValueError, match="not registered here"):
        predict_images(tmp_path / "run", [samples[0].path], backbone=backbone)


@pytest.mark.parametrize("method", __import__("kmat.methods", fromlist=["x"]).available_methods())
def test_every_method_predicts_from_its_run_folder_as_it_evaluated(
    method, backbone, tiny_model_dir, toy_task_master, tmp_path
):
    """kmat predict from the run folder alone (class embeddings + head) makes the run's own
    low-end decisions, for every registered method."""
    res = run(
        toy_run_config(toy_task_master, tmp_path / "run", tiny_model_dir, method=method), backbone=backbone
    )
    samples = load_task(toy_task_master).low.split("test")
    preds = predict_images(tmp_path / "run", [s.path for s in samples], backbone=backbone)
    classes = res["config"]["classes"]
    cm = _confusion(samples, preds, classes)
    assert cm == res["confusion"]["low"], f"{method}: predict decides otherwise than the run's evaluation"


def test_labels_as_users_write_them(backbone, tiny_model_dir, toy_task_master, tmp_path, capsys):
    """A labels CSV saved by a spreadsheet (byte-order mark, CRLF, spaces after commas, other case),
    class folders named in another case or with underscores, and --out without .csv: all scored; an
    image labelled twice differently, or a CSV that is not UTF-8, is one error line before predicting;
    a metrics file that cannot be written stops before the CSV is written."""
    import shutil

    res = run(toy_run_config(toy_task_master, tmp_path / "run", tiny_model_dir), backbone=backbone)
    samples = load_task(toy_task_master).low.split("test")
    classes = res["config"]["classes"]
    n = len(samples)
    argv = ["predict", "--run", str(tmp_path / "run"), "--device", "cpu"]
    labels = tmp_path / "labels.csv"
    rows = "".join(f"{s.path}, {classes[s.label].upper()}\r\n" for s in samples)
    labels.write_bytes(("\ufeffpath, label\r\n" + rows).encode("utf-8"))
    folder = samples[0].path.parent
    assert main([*argv, "--images", str(folder), "--labels", str(labels)]) == 0
    assert f"scored {n} labelled image(s)" in capsys.readouterr().out

    labels.write_text(f"path,label\n{samples[0].path},{classes[0]}\n{samples[0].path},{classes[1]}\n")
    assert main([*argv, "--images", str(folder), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3" in err and "line 2" in err and "-o labels" not in err
    labels.write_bytes("path,label\nnaïve.png,normal\n".encode("latin-1"))
    assert main([*argv, "--images", str(folder), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmat: error:") and "UTF-8" in err and "Traceback" not in err

    lab = tmp_path / "labelled"
    spelled = {"normal": "Normal", "benign": "Benign_Lesion", "malignant": "MALIGNANT"}  # nested below
    for i, s in enumerate(samples):
        name = spelled[classes[s.label]]
        dest = lab / name / "sub" / f"{i:03d}{s.path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, dest)
    out = tmp_path / "preds"
    assert main([*argv, "--images", str(lab), "--out", str(out)]) == 0
    assert f"scored {n} labelled image(s)" in capsys.readouterr().out
    scores = json.loads((tmp_path / "preds.metrics.json").read_text())
    assert scores["confusion"] == res["confusion"]["low"]
    assert main([*argv, "--images", str(lab), "--out", str(tmp_path / "p.v2.csv")]) == 0
    assert (tmp_path / "p.v2.metrics.json").is_file()
    capsys.readouterr()

    (tmp_path / "q.metrics.json").mkdir()
    assert main([*argv, "--images", str(lab), "--out", str(tmp_path / "q.csv")]) == 2
    assert "q.metrics.json" in capsys.readouterr().err
    assert not (tmp_path / "q.csv").exists()  # nothing written
