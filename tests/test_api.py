"""The Python API: kmat.train / kmat.load_run / Run.predict, a light `import kmat`, provenance in
result.json, plain progress lines off a terminal, and early errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

import kmat
from kmat.cli import main
from kmat.errors import CheckpointError, ConfigError, ImageError


@pytest.fixture(scope="module")
def trained(tiny_model_dir, toy_task_master, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    run = kmat.train(
        toy_task_master,
        method="kmat",
        out=out,
        backbone=f"local-dir:{tiny_model_dir}",
        shots=2,
        seed=1,
        device="cpu",
        epochs=2,
        show_progress=False,
    )
    return run, out


def test_train_returns_the_run_of_result_json(trained):
    run, out = trained
    assert isinstance(run, kmat.Run)
    on_disk = json.loads((out / "result.json").read_text())
    assert run.metrics == on_disk["metrics"]
    assert run.config == on_disk["config"] and run.config["method_config"]["epochs"] == 2
    assert run.classes == ["normal", "benign", "malignant"]
    assert set(run.class_embeddings) == {"high", "low"}
    assert run.class_embeddings["low"].shape[0] == 3
    again = kmat.load_run(out, device="cpu")
    assert again.metrics == run.metrics and torch.equal(
        again.class_embeddings["low"], run.class_embeddings["low"]
    )


def test_predict_paths_pil_and_tensors_agree_with_the_cli(trained, toy_task_master, tmp_path):
    _, out = trained
    images = sorted((toy_task_master / "images" / "loscan").glob("*_test_*.png"))
    csv_path = tmp_path / "preds.csv"
    args = ["predict", "--run", str(out), "--images", *map(str, images), "--out", str(csv_path)]
    assert main([*args, "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    cli_labels = [r["prediction"] for r in rows]
    cli_probs = torch.tensor([[float(r[f"p_{c}"]) for c in ("normal", "benign", "malignant")] for r in rows])

    run = kmat.load_run(out, device="cpu")
    pils = [Image.open(p) for p in images]
    for given in (
        images,  # paths
        [str(p) for p in images],
        pils,  # PIL images
        [TF.pil_to_tensor(im.convert("RGB")) for im in pils],  # uint8 (3, H, W)
        torch.stack([TF.to_tensor(im.convert("RGB")) for im in pils]),  # float batch (N, 3, H, W)
    ):
        preds = run.predict(given, modality="low")
        assert preds.labels == cli_labels
        assert torch.allclose(preds.probabilities, cli_probs, atol=2e-6)
        assert preds.classes == run.classes and len(preds) == len(images)
    assert run.predict(images[:1]).names == [str(images[0])]
    assert run.predict(pils[0]).names == ["<image 0>"]
    assert [p.label for p in run.predict(images)] == cli_labels

    from kmat.run.predict import predict_images  # the function below the API takes PIL images too

    below = predict_images(out, pils[:2], backbone=run.backbone)
    assert [p.label for p in below] == cli_labels[:2]


def test_predictions_score_against_true_labels(trained, toy_task_master):
    run, out = trained
    from kmat.data.task import load_task

    samples = load_task(toy_task_master).low.split("test")
    preds = kmat.load_run(out, device="cpu").predict([s.path for s in samples])
    by_index = preds.score([s.label for s in samples])
    by_name = preds.score([run.classes[s.label] for s in samples])
    assert by_index == by_name
    assert by_index["confusion"] == run.result["confusion"]["low"]
    assert by_index["acc"] == pytest.approx(run.metrics["low"]["acc"], abs=1e-3)
    with pytest.raises(ConfigError, match="is not a class"):
        preds.score(["nope"] * len(samples))
    with pytest.raises(ConfigError, match="label"):
        preds.score([0])


def test_predict_refuses_what_is_not_an_image(trained):
    run = kmat.load_run(trained[1], device="cpu")
    normalised = torch.randn(3, 40, 40)
    with pytest.raises(ImageError, match=r"<image 1> \(float pixel values .* not \[0, 1\]"):
        run.predict([torch.zeros(3, 40, 40), normalised])
    with pytest.raises(ImageError, match="not an image"):
        run.predict([torch.zeros(5, 40, 40, dtype=torch.uint8)])
    with pytest.raises(ConfigError, match="modality"):
        run.predict(torch.zeros(3, 40, 40), modality="mid")


def test_another_backbone_is_refused(trained, tmp_path):
    from kmat.tools.tinymodel import write_tiny_biomedclip

    other = write_tiny_biomedclip(tmp_path / "other", size="tiny", seed=5)
    run = kmat.load_run(trained[1], device="cpu", backbone=f"local-dir:{other}")
    with pytest.raises(CheckpointError, match="trained with backbone weights"):
        run.predict(torch.zeros(3, 40, 40))
    with pytest.warns(UserWarning, match="allowed"):
        kmat.load_run(
            trained[1], device="cpu", backbone=f"local-dir:{other}", allow_backbone_mismatch=True
        ).predict(torch.zeros(3, 40, 40))


def test_import_kmat_stays_light():
    code = (
        "import sys, kmat; names = dir(kmat); "
        "heavy = [m for m in ('torch', 'open_clip', 'transformers', 'kmat.api') if m in sys.modules]; "
        "print(heavy, 'load_run' in names, kmat.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True", kmat.__version__]
    with pytest.raises(AttributeError, match="nosuch"):
        kmat.nosuch  # noqa: B018
    for name in kmat.__all__:
        assert getattr(kmat, name) is not None
        if callable(getattr(kmat, name)):
            assert getattr(kmat, name).__doc__


def test_result_records_the_device_and_commit(trained):
    res = json.loads((trained[1] / "result.json").read_text())
    assert res["device_used"] == "cpu" and res["config"]["device"] == "cpu"
    assert res["versions"]["kmat"] == kmat.__version__
    src = str(Path(kmat.__file__).parent)

    def git(*args):
        return subprocess.run(["git", "-C", src, *args], capture_output=True, text=True)

    if shutil.which("git") and git("ls-files", "--error-unmatch", "__init__.py").returncode == 0:
        head = git("rev-parse", "HEAD").stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", res["versions"]["kmat_git"])
        assert res["versions"]["kmat_git"].startswith(head)
    else:
        assert "kmat_git" not in res["versions"]


def test_source_commit_never_fails(tmp_path, monkeypatch):
    from kmat.utils.provenance import source_commit

    assert source_commit.__wrapped__(tmp_path) is None  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert source_commit.__wrapped__(tmp_path) is None


def test_progress_off_a_terminal_is_plain_lines(
    tiny_model_dir, toy_task_master, tmp_path, monkeypatch, capsys
):
    from kmat.utils import progress as progress_mod

    monkeypatch.delenv("KMAT_PROGRESS", raising=False)
    monkeypatch.setattr(progress_mod, "LINE_INTERVAL_S", 0.0)
    bar = progress_mod.progress(total=3, desc="counting", unit="step", mininterval=0.0)
    for _ in range(3):
        bar.set_postfix(loss="0.5")
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "counting: 3/3 step in " in err and "loss=0.5" in err
    kmat.train(
        toy_task_master,
        method="coop",
        out=tmp_path / "r",
        backbone=f"local-dir:{tiny_model_dir}",
        shots=1,
        device="cpu",
        epochs=2,
        feature_cache=False,
    )
    err += capsys.readouterr().err
    assert "training coop: 2/2 epoch in" in err and "test images: " in err
    assert "\x1b[" not in err and "\r" not in err
    monkeypatch.setenv("KMAT_PROGRESS", "0")
    quiet = progress_mod.progress(total=1, desc="hidden")
    quiet.update(1)
    quiet.close()
    assert capsys.readouterr().err == ""


def test_a_wrong_method_fails_before_the_backbone_loads(toy_task_master, tmp_path, monkeypatch, capsys):
    import kmat.api
    import kmat.backbone
    import kmat.run.runner

    def no_loading(*a, **k):
        raise AssertionError("the backbone was loaded before the method name was checked")

    for module in (kmat.backbone, kmat.api, kmat.run.runner):
        monkeypatch.setattr(module, "load_backbone", no_loading)
    args = ["train", "--task", str(toy_task_master), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*args, "--method", "nosuch"]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown method 'nosuch'"):
        kmat.train(toy_task_master, method="nosuch", out=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"no option\(s\) \['nosuch_option'\]"):
        kmat.train(toy_task_master, method="coop", out=tmp_path / "o", nosuch_option=1)
    assert not (tmp_path / "o").exists()


def test_score_takes_numpy_and_tensor_class_indices():
    import numpy as np
    import torch

    from kmat.api import Predictions
    from kmat.errors import ConfigError

    preds = Predictions(["a", "b", "c"], ["x", "y", "x"], torch.zeros(3, 2), ["x", "y"])
    assert preds.score(np.array([0, 1, 1]))["n"] == 3
    assert preds.score(torch.tensor([0, 1, 1]))["acc"] == preds.score(["x", "y", "y"])["acc"]
    for bad in ([True, 1, 0], [0.0, 1, 0], ["z", "x", "y"]):
        with pytest.raises(ConfigError, match="is not a class"):
            preds.score(bad)
