"""Resume never keeps a run whose inputs changed (issue #15, A3).

A grid skips a finished run only when its configuration, its backbone's weights and its task data
(manifests, image bytes, descriptions) are those of the run to be done; otherwise the run is redone
and the printout says why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from cli_helpers import reproduce_argv
from kmat.cli import main
from kmat.data.fingerprint import data_fingerprint
from kmat.data.task import load_task

SETTING = "16shot-epochs=1"


def _reproduce(model_dir: Path, task: Path, out: Path, *extra: str) -> int:
    return main(reproduce_argv(model_dir, task, out, *extra, methods=["zeroshot", "coop"], quiet=False))


def _printed(capsys) -> str:
    got = capsys.readouterr()
    return got.out + got.err


def _result(out: Path, method: str = "coop") -> dict:
    return json.loads((out / "runs" / "toy" / method / SETTING / "seed1" / "result.json").read_text())


def test_fingerprint_follows_image_bytes_not_paths(toy_task, tmp_path):
    before = data_fingerprint(load_task(toy_task))
    moved = tmp_path / "elsewhere"
    shutil.copytree(toy_task, moved)
    assert data_fingerprint(load_task(moved)) == before  # a copied dataset is the same data
    img = next((moved / "images" / "loscan").glob("*_test_*.png"))
    Image.new("RGB", (40, 40), (255, 0, 0)).save(img)  # same path, other pixels
    assert data_fingerprint(load_task(moved)) != before


def test_changed_task_data_redoes_the_runs_and_says_why(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    first = _result(out)
    assert first["config"]["task_data"]  # recorded
    capsys.readouterr()
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    printed = _printed(capsys)
    assert "2 already done" in printed

    # halve the low-end test split
    manifest = toy_task / "toy__loscan.csv"
    lines = manifest.read_text().splitlines()
    tests = [ln for ln in lines if ",test," in ln]
    drop = set(tests[::2])
    manifest.write_text("\n".join(ln for ln in lines if ln not in drop) + "\n")
    capsys.readouterr()
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    printed = _printed(capsys)
    assert "0 already done" in printed
    assert "redoing  toy/coop" in printed and "replacing a stale run: task_data changed" in printed
    second = _result(out)
    assert second["n_test"]["low"] == first["n_test"]["low"] - len(drop)
    assert second["config"]["task_data"] != first["config"]["task_data"]


def test_changed_descriptions_make_the_run_stale(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    desc = toy_task / "descriptions.json"
    data = json.loads(desc.read_text())
    first_mod = next(iter(data))
    first_cls = next(iter(data[first_mod]))
    data[first_mod][first_cls].append("an extra sentence written after the run")
    desc.write_text(json.dumps(data))
    capsys.readouterr()
    assert _reproduce(tiny_model_dir, toy_task, out, "--dry-run") == 0
    printed = _printed(capsys)
    assert "pending  toy/coop" in printed and "stale" in printed


def test_swapped_backbone_weights_redo_the_runs(tiny_model_dir, toy_task, tmp_path, capsys):
    from kmat.tools.tinymodel import write_tiny_biomedclip

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "rep"
    assert _reproduce(model, toy_task, out) == 0
    first = _result(out)
    other = write_tiny_biomedclip(tmp_path / "other", size="tiny", seed=1)  # same architecture
    for f in other.iterdir():
        shutil.copy(f, model / f.name)  # the weights swapped in place, same folder and spec
    capsys.readouterr()
    assert _reproduce(model, toy_task, out) == 0
    printed = _printed(capsys)
    assert "0 already done" in printed and "backbone_weights changed" in printed
    second = _result(out)
    assert second["config"]["backbone_identity"] != first["config"]["backbone_identity"]


def test_a_result_without_a_fingerprint_is_redone(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    path = out / "runs" / "toy" / "coop" / SETTING / "seed1" / "result.json"
    old = json.loads(path.read_text())
    del old["config"]["task_data"]  # as written by kmat before the fingerprint
    old["schema_version"] = 2
    path.write_text(json.dumps(old))
    capsys.readouterr()
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    printed = _printed(capsys)
    assert "1 already done" in printed  # zero-shot, untouched
    assert "task_data: not recorded" in printed
    assert _result(out)["config"]["task_data"]


def test_a_configuration_change_is_still_refused_without_overwrite(tiny_model_dir, toy_task, tmp_path):
    from kmat.errors import RunConflictError
    from kmat.run.runner import check_run_folder, existing_identity

    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    folder = out / "runs" / "toy" / "coop" / SETTING / "seed1"
    found = existing_identity(folder)
    assert found is not None
    expected = {**found, "method_config": {**found["method_config"], "lr": 1.0}, "task_data": "0" * 16}
    try:
        check_run_folder(folder, expected)
    except RunConflictError as err:
        assert "method_config.lr" in str(err)
    else:
        raise AssertionError("a run of another configuration was replaced silently")


def test_temporary_files_of_a_killed_report_are_cleaned_up(tiny_model_dir, toy_task, tmp_path):
    import os
    import time

    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    old = out / ".table2.md.k1ll3d.tmp"
    young = out / ".results.csv.wr1t1ng.tmp"
    for f in (old, young):
        f.write_text("half a table")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert main(["table", str(out), "--table", "2", "--no-figures"]) == 0
    assert not old.exists()  # left by a killed write long ago
    assert young.exists()  # may belong to a write in progress


def test_the_same_weights_under_another_spec_are_the_same_run(tiny_model_dir, toy_task, tmp_path, capsys):
    out = tmp_path / "rep"
    assert _reproduce(tiny_model_dir, toy_task, out) == 0
    moved = tmp_path / "moved-model"
    shutil.copytree(tiny_model_dir, moved)  # another path (or an alias such as "demo"), same weights
    stale = out / "runs" / "toy" / "coop" / SETTING / "seed1" / "error.json"
    stale.write_text('{"error": "from an earlier failed attempt"}')
    capsys.readouterr()
    assert _reproduce(moved, toy_task, out) == 0
    printed = _printed(capsys)
    assert "2 already done" in printed and "FAILED" not in printed
    assert not stale.exists()  # an error.json beside a finished run is stale
