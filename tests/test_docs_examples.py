"""The documentation's examples run, and what it states agrees with the code (issue #14, section 8)."""

from __future__ import annotations

import json
import re
import shlex
import sys
import types
from pathlib import Path

import pytest

from fake_raw import write_image
from kmat.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _blocks(path: Path, lang: str) -> list[str]:
    """The fenced code blocks of ``lang`` in a Markdown file, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _kmat_lines(block: str) -> list[list[str]]:
    """The ``kmat ...`` commands of a shell block as argument lists (comments dropped)."""
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("kmat ")]


@pytest.fixture()
def doc_method():
    """The method of docs/adding-a-method.md, defined from the doc's first Python block."""
    from kmat.methods import unregister

    module = types.ModuleType("doc_mycoop")
    sys.modules[module.__name__] = module
    try:
        exec(
            compile(_blocks(DOCS / "adding-a-method.md", "python")[0], "adding-a-method.md", "exec"),
            module.__dict__,
        )
        yield module
    finally:
        unregister("mycoop")
        sys.modules.pop(module.__name__, None)


def test_the_method_of_the_doc_trains_and_is_an_option_of_every_command(
    doc_method, tiny_model_dir, toy_task_master, tmp_path, capsys
):
    assert main(["train", "--method", "mycoop", "--help-options"]) == 0
    listed = capsys.readouterr().out
    assert "beta" in listed and "n_ctx" in listed
    out = tmp_path / "run"
    argv = ["train", "--task", str(toy_task_master), "--method", "mycoop", "--beta", "2", "-o", "n_ctx=2"]
    argv += ["--epochs", "2", "--shots", "2", "--backbone", f"local-dir:{tiny_model_dir}", "--device", "cpu"]
    assert main([*argv, "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "mycoop"
    assert (
        result["config"]["method_config"]["beta"] == 2.0 and result["config"]["method_config"]["n_ctx"] == 2
    )
    assert [set(h) >= {"ce", "pull", "total"} for h in result["history"]] == [True, True]
    assert (out / "history.csv").read_text().splitlines()[0].split(",")[:2] == ["epoch", "lr"]
    # the loss is its docstring's formula
    assert "beta * mean_c ||t_c - t_c^zs||^2" in doc_method.MyCoOp.loss.__doc__


def test_the_class_folder_walkthrough_of_the_doc_runs(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """docs/adding-a-dataset.md's five commands, as written (the train command gets the tiny model)."""
    for modality, value in (("sharp", 40), ("blurry", 160)):
        for k, cls in enumerate(("zero", "one", "two")):
            for i in range(8):
                write_image(tmp_path / "raw" / modality / cls / f"{i}.png", value + 20 * k + i)
    monkeypatch.chdir(tmp_path)
    commands = _kmat_lines(_blocks(DOCS / "adding-a-dataset.md", "bash")[0])
    assert [c[0] for c in commands] == ["prepare", "prepare", "tasks", "describe", "train"]
    for argv in commands:
        if argv[0] == "train":
            argv += [
                "--backbone",
                f"local-dir:{tiny_model_dir}",
                "--device",
                "cpu",
                "--quiet",
                "--shots",
                "2",
            ]
        assert main(argv) == 0, (argv, capsys.readouterr())
    capsys.readouterr()
    result = json.loads((tmp_path / "runs" / "digits" / "result.json").read_text())
    assert result["config"]["descriptions_template"] is True
    assert "template-only descriptions" in (tmp_path / "runs" / "digits" / "log.txt").read_text()
    task = json.loads((tmp_path / "data" / "digits" / "task.json").read_text())
    doc = (DOCS / "adding-a-dataset.md").read_text()
    for block in ("high_end", "low_end"):
        assert task[block]["manifest"] in doc  # the folder listing names the files it writes
    from kmat.data.spec import ModalitySpec, TaskSpec

    for field in [*TaskSpec.model_fields, *ModalitySpec.model_fields]:
        assert f"`{field}`" in doc, f"task.json field {field} is not documented"


def _env_vars_read_by_kmat() -> set[str]:
    """Every environment variable name the source reads (``os.environ[...]``, ``.get``,
    ``.setdefault``, ``getenv``), following a name held in a module constant."""
    names: set[str] = set()
    for path in (ROOT / "src" / "kmat").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        constants = dict(re.findall(r'^([A-Z_]+)\s*=\s*"([A-Z][A-Z0-9_]+)"', text, flags=re.M))
        for ref in re.findall(
            r'(?:environ(?:\.get|\.setdefault|\.pop)?\(|environ\[|getenv\()\s*("?[A-Za-z_][A-Za-z0-9_]*"?)',
            text,
        ):
            name = ref.strip('"') if ref.startswith('"') else constants.get(ref)
            assert name, f"{path}: environment variable read through {ref}, not a constant of its module"
            names.add(name)
    return names


def test_the_readme_lists_every_environment_variable_once():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Environment variables") : text.index("## Library use")]
    rows = re.findall(r"^\| `([A-Z_0-9]+)` \|[^|]+\|[^|]+\|$", table, flags=re.M)
    read = _env_vars_read_by_kmat()
    assert {"KMAT_DATA", "KMAT_CACHE", "KMAT_PROGRESS", "KMAT_DEBUG"} <= read
    assert sorted(rows) == sorted(read), "README's table and the variables the source reads differ"


def test_h_is_defined_where_the_first_table_is_shown():
    text = README.read_text(encoding="utf-8")
    first_table = text.index("| Dataset |")
    definition = text.index("**H** the\nharmonic mean")
    assert definition < first_table
    assert (
        "per seed" in text[definition:first_table]
        and "averaged over the seeds" in text[definition:first_table]
    )


def _minutes(text: str) -> float:
    m = re.fullmatch(r"(\d+) min(?: (\d+) s)?", text)
    assert m, text
    return int(m.group(1)) + int(m.group(2) or 0) / 60


def test_demo_help_gives_the_readmes_measured_durations(capsys):
    text = README.read_text(encoding="utf-8")
    full = _minutes(re.search(r"`kmat demo` \*\*([^*]+)\*\*", text).group(1))
    quick = _minutes(re.search(r"`kmat demo --quick` [^*]*\*\*([^*]+)\*\*", text).group(1))
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    said = [int(n) for n in re.findall(r"about (\d+) min", help_text)]
    assert said == [round(full), round(quick)], (said, full, quick)


@pytest.mark.parametrize(
    ("shown", "given", "name", "expected"),
    [
        ("`-o lr=2e-3`", "lr=2e-3", "lr", 0.002),
        ("`-o n_ctx=8`", "n_ctx=8", "n_ctx", 8),
        ("`-o csc=true|false`", "csc=false", "csc", False),
        ("`on|off`", "csc=on", "csc", True),
        ("`-o init_words=none`", "init_words=none", "init_words", None),
        ("`-o logit_scale=`", "logit_scale=", "logit_scale", None),
        (
            '`-o template="{classname} {modality}."`',
            "template={classname} {modality}.",
            "template",
            "{classname} {modality}.",
        ),
    ],
)
def test_the_option_syntax_of_the_readme(shown, given, name, expected):
    """Each spelling the README shows reads as it says (``given``: the value after the shell's quoting)."""
    import argparse

    from kmat.cli.options import method_options_from_args

    assert shown in " ".join(README.read_text(encoding="utf-8").split())
    assert method_options_from_args(argparse.Namespace(method_options=[given])) == {name: expected}
