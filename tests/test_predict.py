"""`kmat predict`: deploy a run's learned low-end prompts on new images."""

import csv
import json

import pytest

from kmat.cli import main
from kmat.data.task import load_task
from kmat.run.config import RunConfig
from kmat.run.predict import predict_images
from kmat.run.runner import run


def test_predictions_match_the_runs_evaluation(backbone, tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "run"
    res = run(
        RunConfig(
            task=str(toy_task_master),
            out=str(out),
            backbone=f"local-dir:{tiny_model_dir}",
            shots=2,
            seed=1,
            device="cpu",
            show_progress=False,
            options={"epochs": 2},
        ),
        backbone=backbone,
    )
    samples = load_task(toy_task_master).low.split("test")
    preds = predict_images(out, [s.path for s in samples], role="low", backbone=backbone)
    classes = res["config"]["classes"]
    cm = [[0] * 3 for _ in range(3)]
    for s, p in zip(samples, preds, strict=True):
        cm[s.label][classes.index(p.label)] += 1
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


def test_per_image_prompt_methods_are_refused(backbone, tiny_model_dir, toy_task_master, tmp_path):
    out = tmp_path / "cocoop"
    run(
        RunConfig(
            task=str(toy_task_master),
            out=str(out),
            method="cocoop",
            backbone=f"local-dir:{tiny_model_dir}",
            shots=1,
            seed=1,
            device="cpu",
            show_progress=False,
            options={"epochs": 1},
        ),
        backbone=backbone,
    )
    sample = load_task(toy_task_master).low.split("test")[0]
    with pytest.raises(ValueError, match="builds its prompts per image"):
        predict_images(out, [sample.path], backbone=backbone)
