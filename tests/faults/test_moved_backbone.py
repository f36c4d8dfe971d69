"""A run is tied to its backbone's weights: moved, swapped or relative-path models."""

import json
import os
import shutil

from cli_helpers import train_argv
from kmat.cli import main
from kmat.tools.tinymodel import write_tiny_biomedclip


def test_relative_local_dir_is_recorded_absolute(tiny_model_dir, toy_task_master, tmp_path, monkeypatch):
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    assert main(train_argv("./model", toy_task_master, tmp_path / "r", method="coop", epochs=1)) == 0
    cfg = json.loads((tmp_path / "r" / "result.json").read_text())["config"]
    assert cfg["backbone"] == f"local-dir:{(tmp_path / 'model').resolve()}"
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert os.path.isabs(saved["backbone"].removeprefix("local-dir:"))


def test_swapped_weights_are_refused_and_a_moved_model_is_accepted(
    tiny_model_dir, toy_task_master, tmp_path, capsys
):
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    assert main(train_argv(tmp_path / "model", toy_task_master, tmp_path / "r", method="coop", epochs=1)) == 0
    capsys.readouterr()
    images = [str(p) for p in sorted((toy_task_master / "images" / "loscan").glob("*.png"))[:3]]
    predict = ["predict", "--run", str(tmp_path / "r"), "--images", *images, "--device", "cpu"]
    assert main(predict) == 0
    first = capsys.readouterr().out

    shutil.move(tmp_path / "model", tmp_path / "moved")  # the model moved: its weights are the same
    assert main(predict) == 2
    assert "not an open_clip model folder" in capsys.readouterr().err
    assert main([*predict, "--backbone", f"local-dir:{tmp_path / 'moved'}"]) == 0
    assert capsys.readouterr().out == first
    assert (
        main(["evaluate", "--run", str(tmp_path / "r"), "--backbone", f"local-dir:{tmp_path / 'moved'}"]) == 0
    )
    capsys.readouterr()

    write_tiny_biomedclip(tmp_path / "other", size="tiny", seed=7)  # other weights, same layout
    other = f"local-dir:{tmp_path / 'other'}"
    for cmd in (
        [*predict, "--backbone", other],
        ["evaluate", "--run", str(tmp_path / "r"), "--backbone", other],
    ):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert "the run was trained with backbone weights" in err and "Traceback" not in err
    assert main([*predict, "--backbone", other, "--allow-backbone-mismatch"]) == 0
    assert "warning: " in capsys.readouterr().err


def test_a_backbone_of_another_architecture_is_one_line(tiny_model_dir, toy_task_master, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_argv(tiny_model_dir, toy_task_master, run, method="coop", epochs=1)) == 0
    other = write_tiny_biomedclip(tmp_path / "reduced", size="reduced", seed=0)
    capsys.readouterr()
    flags = ["--backbone", f"local-dir:{other}", "--allow-backbone-mismatch"]
    assert main(["evaluate", "--run", str(run), *flags]) == 2
    err = capsys.readouterr().err
    assert "backbone of another architecture" in err and "Traceback" not in err
    images = toy_task_master / "images" / "loscan"
    assert (
        main(
            ["predict", "--run", str(run), "--images", str(images), "--out", str(tmp_path / "p.csv"), *flags]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "another architecture" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists()


def test_a_moved_model_says_how_to_point_at_it(tiny_model_dir, toy_task_master, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    run = tmp_path / "run"
    assert main(train_argv(model, toy_task_master, run, method="coop", epochs=1)) == 0
    model.rename(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--backbone local-dir:NEW_PLACE" in err and "Traceback" not in err
    images = toy_task_master / "images" / "loscan"
    assert (
        main(["predict", "--run", str(run), "--images", str(images), "--out", str(tmp_path / "p.csv")]) == 2
    )
    assert "--backbone local-dir:NEW_PLACE" in capsys.readouterr().err
