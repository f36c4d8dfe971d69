"""Acceptance: `kmat prepare` on fake raw downloads, then `kmat train` on each of the four tasks."""

import json

import pytest

from cli_helpers import train_argv
from fake_raw import make_busi, make_cc_ccii, make_chestxray, make_derm7pt, make_dmid, make_midas
from kmat.cli import main

TASKS = {
    "skin1": [("midas", make_midas, [])],
    "skin2": [("derm7pt", make_derm7pt, [])],
    "breast": [("dmid", make_dmid, []), ("busi", make_busi, [])],
    "chest": [("cc_ccii", make_cc_ccii, []), ("chestxray", make_chestxray, [])],
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_prepare_then_train(task, tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    for dataset, make, extra in TASKS[task]:
        raw = tmp_path / "raw" / dataset
        make(raw)
        assert main(["prepare", dataset, "--raw", str(raw), "--out", str(data), *extra]) == 0
        printed = capsys.readouterr().out
        assert "paper" in printed.lower()
    spec = json.loads((data / task / "task.json").read_text())
    assert spec["manifest_sha256"]
    out = tmp_path / "run"
    code = main(train_argv(tiny_model_dir, task, out, "--data-root", str(data), epochs=1, shots=2))
    assert code == 0, capsys.readouterr().err
    res = json.loads((out / "result.json").read_text())
    assert res["task"] == task and set(res["metrics"]) == {"high", "low", "h"}
    assert list(res["per_class"]["high"]) == spec["classes"]


def test_prepare_wrong_folder_and_bad_option(tmp_path, capsys):
    raw = tmp_path / "busi"
    make_busi(raw)
    assert main(["prepare", "derm7pt", "--raw", str(raw), "--out", str(tmp_path / "d")]) == 2
    assert "derm7pt" in capsys.readouterr().err.lower()
    assert (
        main(["prepare", "derm7pt", "--raw", str(raw), "--out", str(tmp_path / "d"), "--slice-policy", "all"])
        == 2
    )
    assert "does not take" in capsys.readouterr().err


def test_tasks_lists_prepared_state(tmp_path, capsys):
    make_derm7pt(tmp_path / "raw")
    assert main(["prepare", "derm7pt", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "data")]) == 0
    capsys.readouterr()
    assert main(["tasks", "--data-root", str(tmp_path / "data")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skin2")]
    assert lines and "prepared" in lines[0] and "not prepared" not in lines[0]
