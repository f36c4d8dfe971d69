"""The restructured contracts: run layout and identity, options from method configs, run config
files, one error channel, and the import layers."""

import json
import subprocess
import sys

import pytest

from cli_helpers import reproduce_argv, train_argv
from kmat.cli import main
from kmat.run.layout import grid_run_dir, options_tag


def test_grid_path_carries_shots_and_options():
    assert grid_run_dir("o", "toy", "kmat", 16, 1).as_posix() == "o/runs/toy/kmat/16shot/seed1"
    path = grid_run_dir("o", "toy", "kmat", 4, 2, {"lambda_fgw": 0.5, "epochs": 2, "csc": False})
    assert path.as_posix() == "o/runs/toy/kmat/4shot-csc=off,epochs=2,lambda_fgw=0.5/seed2"
    long = options_tag({f"option_{i}": i for i in range(20)})
    assert len(long) <= 60 and "~" in long  # shortened, with a hash of the whole


def test_method_options_reach_result_json(tiny_model_dir, toy_task_master, tmp_path):
    assert (
        main(
            train_argv(
                tiny_model_dir, toy_task_master, tmp_path / "kg", "-o", "W=2", method="kgcoop", epochs=1
            )
        )
        == 0
    )
    res = json.loads((tmp_path / "kg" / "result.json").read_text())
    assert res["config"]["method_config"]["W"] == 2.0
    assert res["config"]["method_config"]["momentum"] == 0.9  # the whole recipe is recorded
    assert res["schema_version"] == 3
    assert (
        main(
            train_argv(
                tiny_model_dir,
                toy_task_master,
                tmp_path / "bc",
                "-o",
                "tau=1.75",
                "--lambda-S",
                "0.5",
                method="biomedcoop",
                epochs=1,
            )
        )
        == 0
    )
    mc = json.loads((tmp_path / "bc" / "result.json").read_text())["config"]["method_config"]
    assert (mc["tau"], mc["lambda_S"]) == (1.75, 0.5)


def test_saved_config_reruns_the_run(tiny_model_dir, toy_task_master, tmp_path):
    assert (
        main(
            train_argv(
                tiny_model_dir,
                toy_task_master,
                tmp_path / "a",
                "--seed",
                "3",
                "-o",
                "n_ctx=2",
                "-o",
                "init_words=none",
                method="coop",
                epochs=2,
            )
        )
        == 0
    )
    first = json.loads((tmp_path / "a" / "result.json").read_text())
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["seed"] == 3 and saved["options"]["n_ctx"] == 2 and "out" not in saved
    assert (
        main(
            [
                "train",
                "--config",
                str(tmp_path / "a" / "config.json"),
                "--out",
                str(tmp_path / "b"),
                "--quiet",
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "b" / "result.json").read_text())
    assert again["metrics"] == first["metrics"]
    assert again["config"]["method_config"] == first["config"]["method_config"]


def test_yaml_config_and_flags_override_it(tiny_model_dir, toy_task_master, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"task: {toy_task_master}\nbackbone: local-dir:{tiny_model_dir}\nmethod: zeroshot\n"
        "device: cpu\nseed: 5\n"
    )
    assert main(["train", "--config", str(cfg), "--seed", "6", "--out", str(tmp_path / "z"), "--quiet"]) == 0
    assert json.loads((tmp_path / "z" / "result.json").read_text())["seed"] == 6


def test_bad_config_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text('{"tsk": "x"}')
    (tmp_path / "c.yaml").write_text("task: [unclosed")
    for name, msg in (
        ("a.json", "holds an object"),
        ("b.json", "unknown run setting(s) ['tsk']"),
        ("c.yaml", "not a valid config file"),
    ):
        assert main(["train", "--config", str(tmp_path / name), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("kmat: error:") and msg in err and str(tmp_path / name) in err


def test_a_run_of_another_configuration_is_not_replaced(tiny_model_dir, toy_task_master, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="zeroshot")) == 0
    before = (out / "result.json").read_bytes()
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="coop", epochs=1)) == 2
    err = capsys.readouterr().err
    assert "holds a run with another configuration" in err and "method: 'zeroshot' -> 'coop'" in err
    assert (out / "result.json").read_bytes() == before
    assert main(train_argv(tiny_model_dir, toy_task_master, out, method="zeroshot")) == 0  # same: allowed
    assert main(train_argv(tiny_model_dir, toy_task_master, out, "--overwrite", method="coop", epochs=1)) == 0
    assert json.loads((out / "result.json").read_text())["method"] == "coop"


def test_grid_with_other_shots_shares_the_output_folder(tiny_model_dir, toy_task_master, tmp_path, capsys):
    def grid(*extra):
        return main(
            reproduce_argv(
                tiny_model_dir, toy_task_master, tmp_path, *extra, methods=["zeroshot"], epochs=None
            )
        )

    assert grid() == 0 and grid("--shots", "4") == 0
    out = capsys.readouterr().out
    assert "1 run(s) finished, 0 already done" in out.split("kmat reproduce")[-1]
    runs = sorted(p.parent.parent.name for p in (tmp_path / "runs").rglob("result.json"))
    assert runs == ["16shot", "4shot"]
    csv_text = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_text[0].startswith("task,label,method,seed,shots,tag,")
    assert "BiomedCLIP [4shot]" in (tmp_path / "table2.md").read_text()  # two settings: never averaged


def test_help_options_lists_every_field(capsys):
    assert main(["train", "--method", "kgcoop", "--help-options"]) == 0
    text = capsys.readouterr().out
    for name in ("W", "zs_template", "epochs", "momentum", "warmup_lr", "n_ctx"):
        assert f"  {name} " in text


def test_a_bug_keeps_its_traceback(monkeypatch):
    import kmat.cli.tasks as verb

    def boom(args):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(verb, "run", boom)
    with pytest.raises(ValueError, match="a bug"):
        main(["tasks", "--data-root", "/nonexistent"])


def test_import_layers_and_light_core():
    code = (
        "import sys, kmat.methods, kmat.run.runner, kmat.report.results; "
        "bad = [m for m in sys.modules if m.startswith(('kmat.tools', 'kmat.cli', 'matplotlib', 'openai'))]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("kmat")
    cycles = []
    for mod in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(mod):
            if imported != mod and graph.chain_exists(importer=imported, imported=mod):
                cycles.append((mod, imported))
    # a package's __init__ that re-exports its own submodules is not a cycle worth reporting
    cycles = [c for c in cycles if not (c[1].startswith(c[0] + ".") or c[0].startswith(c[1] + "."))]
    assert cycles == []
