"""Tables of runs that are not strictly zero-shot (``kmat tune --select-on low-val``): a column of
their own marked with a dagger and footnoted, ``strict_zero_shot`` in ``results.csv``, never averaged
with strict runs; ``kmat table`` on a tune's folder shows its final runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from kmat.cli import main

LOW_VAL = "low-val (not strict zero-shot)"
FOOTNOTE = "† not strict zero-shot"


def _result(folder: Path, task: str, seed: int, hi: float, lo: float, protocol: str | None = None) -> None:
    folder.mkdir(parents=True)
    res = {
        "method": "kmat",
        "task": task,
        "seed": seed,
        "shots": 16,
        "backbone": "x",
        "metrics": {
            "high": {"acc": hi, "macro_f1": hi},
            "low": {"acc": lo, "macro_f1": lo},
            "h": {"acc": 2 * hi * lo / (hi + lo), "macro_f1": 2 * hi * lo / (hi + lo)},
        },
        "per_class": {"low": {"a": lo, "b": lo}},
    }
    if protocol is not None:
        res["protocol"] = protocol
    (folder / "result.json").write_text(json.dumps(res))


def _csv(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _line(table: str, start: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(start))


def test_not_strict_runs_of_one_cell_are_never_averaged_with_strict_ones(tmp_path):
    cell = tmp_path / "runs" / "skin1" / "kmat" / "16shot"
    _result(cell / "seed1", "skin1", 1, 60.0, 50.0)
    _result(cell / "seed2", "skin1", 2, 60.0, 30.0, protocol=LOW_VAL)
    assert main(["table", str(tmp_path), "--table", "2", "--no-figures", "-q"]) == 0
    table = (tmp_path / "table2.md").read_text()
    assert _line(table, "| Dataset") == "| Dataset | | K-MaT | K-MaT† |"
    assert _line(table, "| Skin I | Hi") == "| Skin I | Hi | **60.0** (**60.0**) | **60.0** (**60.0**) |"
    assert _line(table, "|  | Lo").startswith("|  | Lo | **50.0** (**50.0**) | 30.0 (30.0) |")  # not 40.0
    assert FOOTNOTE in table
    rows = {r["seed"]: r for r in _csv(tmp_path)}
    assert (rows["1"]["strict_zero_shot"], rows["1"]["protocol"]) == ("True", "")
    assert (rows["2"]["strict_zero_shot"], rows["2"]["protocol"]) == ("False", LOW_VAL)


def test_a_table_of_strict_runs_only_has_no_dagger(tmp_path):
    _result(tmp_path / "runs" / "skin1" / "kmat" / "16shot" / "seed1", "skin1", 1, 60.0, 50.0)
    _result(tmp_path / "final" / "seed1", "skin1", 1, 70.0, 40.0, protocol="high-val")
    assert main(["table", str(tmp_path), "--table", "2", "--no-figures", "-q"]) == 0
    table = (tmp_path / "table2.md").read_text()
    assert _line(table, "| Dataset") == "| Dataset | | K-MaT | K-MaT tuned |"
    assert "†" not in table
    assert {r["strict_zero_shot"] for r in _csv(tmp_path)} == {"True"}


def test_kmat_table_shows_the_final_runs_of_a_tune_folder(tmp_path, capsys):
    out = tmp_path / "tune"
    _result(out / "final" / "seed1", "toy", 1, 80.0, 40.0, protocol=LOW_VAL)
    _result(out / "final" / "seed2", "toy", 2, 60.0, 20.0, protocol=LOW_VAL)
    assert main(["table", str(out), "--no-figures"]) == 0
    table = (out / "table2.md").read_text()
    assert _line(table, "| Dataset") == "| Dataset | | K-MaT tuned† |"
    assert _line(table, "| toy | Hi") == "| toy | Hi | **70.0** (**70.0**) |"  # both seeds averaged
    assert FOOTNOTE in table and FOOTNOTE in capsys.readouterr().out
    assert not (out / "table3.md").exists()  # a tune's folder: Table 2 only
    assert [r["strict_zero_shot"] for r in _csv(out)] == ["False", "False"]


def test_kmat_table_on_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no runs/ or final/ folder" in err[0]
