"""The command line as a user runs it."""

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from cli_helpers import train_argv
from kmat.cli import main

KEYS = {"high", "low", "h"}


def _kmat(*args, env_extra=None, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1", KMAT_PROGRESS="0", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "kmat.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.mark.slow
def test_train_end_to_end_subprocess(tiny_model_dir, toy_task_master, tmp_path):
    out = tmp_path / "run"
    proc = _kmat(
        "train",
        "--task",
        str(toy_task_master),
        "--method",
        "kmat",
        "--backbone",
        f"local-dir:{tiny_model_dir}",
        "--epochs",
        "2",
        "--shots",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert set(result["metrics"]) == KEYS
    assert all(set(v) == {"acc", "macro_f1"} for v in result["metrics"].values())
    assert result["config"]["method_config"]["epochs"] == 2
    assert "Hi" in proc.stdout and "result.json" in proc.stdout
    # evaluate re-loads the checkpoint and reproduces the metrics
    proc = _kmat("evaluate", "--run", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == result["metrics"]


def test_biomedclip_offline_fails_fast_with_help(toy_task_master, tmp_path):
    t0 = time.perf_counter()
    proc = _kmat(
        "train",
        "--task",
        str(toy_task_master),
        "--backbone",
        "biomedclip",
        "--out",
        str(tmp_path / "x"),
        "--device",
        "cpu",
    )
    assert time.perf_counter() - t0 < 60
    assert proc.returncode == 2
    assert "local-dir:" in proc.stderr and "Traceback" not in proc.stderr


def _train(task, model, out, capsys, *extra):
    code = main(train_argv(model, task, out, *extra, epochs=1))
    return code, capsys.readouterr()


def test_misspelt_class_in_manifest(tiny_model_dir, toy_task, tmp_path, capsys):
    path = toy_task / "toy__hiscan.csv"
    rows = list(csv.reader(open(path)))
    rows[5][1] = "benighn"
    csv.writer(open(path, "w", newline="")).writerows(rows)
    code, cap = _train(toy_task, tiny_model_dir, tmp_path / "o", capsys)
    assert code == 2
    assert "toy__hiscan.csv:6" in cap.err and "benighn" in cap.err and "benign" in cap.err
    assert not (tmp_path / "o" / "result.json").exists()


def test_missing_image(tiny_model_dir, toy_task, tmp_path, capsys):
    victim = toy_task / "images" / "loscan" / "normal_test_000.png"
    victim.unlink()
    code, cap = _train(toy_task, tiny_model_dir, tmp_path / "o", capsys)
    assert code == 2 and "normal_test_000.png" in cap.err and "not found" in cap.err


def test_empty_split(tiny_model_dir, toy_task, tmp_path, capsys):
    path = toy_task / "toy__hiscan.csv"
    rows = [r for r in csv.reader(open(path)) if r[2] != "test"]
    csv.writer(open(path, "w", newline="")).writerows(rows)
    code, cap = _train(toy_task, tiny_model_dir, tmp_path / "o", capsys)
    assert code == 2 and "toy__hiscan.csv" in cap.err and "empty split" in cap.err


def test_corrupt_image(tiny_model_dir, toy_task, tmp_path, capsys):
    victim = toy_task / "images" / "hiscan" / "benign_test_001.png"
    victim.write_bytes(b"not a png")
    code, cap = _train(toy_task, tiny_model_dir, tmp_path / "o", capsys)
    assert code == 2 and "benign_test_001.png" in cap.err and "corrupt" in cap.err
    assert not (tmp_path / "o").exists()  # a run that cannot read its inputs writes nothing


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--epochs", "-1"], "epochs must be >= 0, got -1 [--epochs, or -o epochs=VALUE]"),
        (["-o", "lambda_fgw=-2"], "lambda_fgw must be >= 0, got -2.0 [--lambda-fgw, or -o lambda_fgw=VALUE]"),
        (["-o", "lamda_fgw=1"], "no method has an option 'lamda_fgw'"),
        (["--shots", "-1"], "shots must be >= 0, got -1 [--shots]"),
        (["--method", "nosuch"], "unknown method"),
    ],
)
def test_bad_options(tiny_model_dir, toy_task_master, tmp_path, capsys, args, msg):
    code = main(
        [
            "train",
            "--task",
            str(toy_task_master),
            "--backbone",
            f"local-dir:{tiny_model_dir}",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
            *args,
        ]
    )
    assert code == 2 and msg in capsys.readouterr().err


def test_help_for_every_verb(capsys):
    for verb in ("train", "evaluate", "backbone", "toy-task", "demo"):
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0
        assert "usage: kmat" in capsys.readouterr().out
