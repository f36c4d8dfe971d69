"""``kmat evaluate --split val|test`` (issue #14, section 2): the validation splits of a trained run."""

from __future__ import annotations

import csv
import json

import pytest

from cli_helpers import train_argv
from kmat.cli import main
from kmat.errors import ConfigError
from kmat.run.layout import RunLayout
from kmat.run.runner import EVAL_SPLITS, evaluate_checkpoint


@pytest.fixture()
def trained(tiny_model_dir, toy_task, tmp_path, capsys):
    """A CoOp run (2 epochs) on a private copy of the toy task: (run folder, result, task folder)."""
    out = tmp_path / "run"
    code = main(train_argv(tiny_model_dir, toy_task, out, method="coop", epochs=2, shots=2))
    assert code == 0
    capsys.readouterr()
    return out, json.loads(RunLayout.of(out).result.read_text()), toy_task


def _evaluate(capsys, run, *extra):
    code = main(["evaluate", "--run", str(run), *extra])
    return code, capsys.readouterr()


def test_val_scores_the_validation_splits_of_both_modalities(trained, capsys):
    run, result, _ = trained
    code, cap = _evaluate(capsys, run, "--split", "val", "--json")
    assert code == 0, cap.err
    metrics = json.loads(cap.out)
    assert set(metrics) == {"high", "low", "h"} and all(metrics[r] is not None for r in metrics)
    # the reported model is the last epoch's: its high-end validation numbers are the run's
    assert metrics["high"]["acc"] == pytest.approx(result["val"]["high"]["acc"], abs=1e-4)
    assert metrics["high"]["macro_f1"] == pytest.approx(result["val"]["high"]["macro_f1"], abs=1e-4)
    assert metrics["low"]["acc"] == pytest.approx(result["val"]["low"]["acc"], abs=1e-4)
    assert metrics["high"]["acc"] == pytest.approx(result["history"][-1]["val_high_acc"], abs=1e-4)


def test_test_is_the_default_and_gives_the_runs_metrics(trained, capsys):
    run, result, _ = trained
    code, cap = _evaluate(capsys, run, "--json")
    assert code == 0 and json.loads(cap.out) == result["metrics"]
    code, cap = _evaluate(capsys, run, "--split", "test", "--json")
    assert code == 0 and json.loads(cap.out) == result["metrics"]


def test_a_low_end_without_validation_images_is_absent_not_zero(trained, capsys):
    run, _, task = trained
    manifest = task / "toy__loscan.csv"
    rows = list(csv.reader(manifest.open(newline="")))
    kept = [r for r in rows if r[2] != "val"]
    assert len(kept) < len(rows)
    with manifest.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    code, cap = _evaluate(capsys, run, "--split", "val", "--json")
    assert code == 0, cap.err
    metrics = json.loads(cap.out)
    assert metrics["low"] is None and metrics["h"] is None
    assert metrics["high"] is not None and 0 <= metrics["high"]["acc"] <= 100
    code, cap = _evaluate(capsys, run, "--split", "val")
    assert code == 0, cap.err
    assert "val splits" in cap.out
    lo = next(line for line in cap.out.splitlines() if line.strip().startswith("Lo"))
    assert "absent (no val images)" in lo and "0.00" not in lo


def test_a_bad_split_is_refused(trained, capsys):
    run, _, _ = trained
    with pytest.raises(SystemExit) as err:
        main(["evaluate", "--run", str(run), "--split", "train"])
    assert err.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="split must be one of test, val"):
        evaluate_checkpoint(RunLayout.of(run).checkpoint, split="train")


def test_help_says_the_model_is_the_last_epoch(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--split {test,val}" in text and "last epoch" in text


def test_the_command_offers_the_library_splits():
    from kmat.cli.evaluate import EVAL_SPLITS as offered

    assert offered == EVAL_SPLITS
