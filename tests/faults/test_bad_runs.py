"""Faults that must end in one `kmat: error:` line and leave nothing a later command trusts."""

import json

import pytest

from cli_helpers import train_argv
from kmat.cli import main


def test_divergence_saves_no_nan_prompts(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "r"
    assert (
        main(train_argv(tiny_model_dir, toy_task_master, out, "--lr", "1e38", method="coop", epochs=2)) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("kmat: error:") and ("diverged" in err or "non-finite loss" in err)
    assert "Traceback" not in err
    assert not (out / "result.json").exists() and not (out / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_non_finite_or_negative_lr_is_refused(tiny_model_dir, toy_task_master, tmp_path, capsys, value):
    assert main(train_argv(tiny_model_dir, toy_task_master, tmp_path / "r", "--lr", value)) == 2
    assert "lr must be" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x00" * 64])
def test_damaged_checkpoint_is_one_line(tiny_model_dir, toy_task_master, tmp_path, capsys, content):
    out = tmp_path / "r"
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="coop", epochs=1)) == 0
    ckpt = out / "checkpoint.safetensors"
    ckpt.write_bytes(content)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kmat: error: {ckpt}: damaged or not a kmat checkpoint") and "Traceback" not in err


def test_truncated_checkpoint_is_one_line(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="coop", epochs=1)) == 0
    ckpt = out / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert main(["evaluate", "--run", str(out)]) == 2
    assert "damaged or not a kmat checkpoint" in capsys.readouterr().err


def test_config_file_of_another_shape(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"task": "t", "options": [1]}))
    assert main(["train", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "o")]) == 2
    assert "'options' must be an object" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["biomedcoop", "kmat"])
def test_missing_descriptions_hint_fits_the_method(tiny_model_dir, toy_task, tmp_path, capsys, method):
    (toy_task / "descriptions.json").unlink()
    assert main(train_argv(tiny_model_dir, toy_task, tmp_path / "r", method=method, epochs=1)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kmat: error: {toy_task}: no descriptions.json") and "Traceback" not in err
    assert "add one to the task folder" in err
    if method == "kmat":  # the anchor term is the only thing that needs them, and it has an off switch
        assert "lambda_anchor = 0" in err and "[--lambda-anchor" in err
    else:  # BiomedCoOp always needs them: no option of another method is suggested
        assert "lambda_anchor" not in err and "lambda-anchor" not in err


@pytest.mark.parametrize("name", ["task.json", "descriptions.json"])
def test_latin1_json_names_the_file(toy_task, name):
    from kmat.data.task import load_task
    from kmat.errors import TaskError
    from kmat.knowledge.descriptions import load_descriptions

    path = toy_task / name
    path.write_bytes(
        path.read_text(encoding="utf-8").replace("}", ', "note": "caf\u00e9"}', 1).encode("latin-1")
    )
    with pytest.raises(TaskError, match=rf"{name}: not UTF-8 text .*save it as UTF-8"):
        load_descriptions(load_task(toy_task))
