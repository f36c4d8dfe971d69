"""The high-end validation accuracy per epoch in a run's history (issue #14, section 2)."""

from __future__ import annotations

import json

from cli_helpers import train_argv
from kmat.cli import main


def test_history_has_the_validation_accuracy_of_every_epoch(tiny_model_dir, toy_task, tmp_path):
    out = tmp_path / "run"
    code = main(train_argv(tiny_model_dir, toy_task, out, method="coop", epochs=3))
    assert code == 0
    res = json.loads((out / "result.json").read_text())
    history = res["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for h in history:
        assert 0.0 <= h["val_high_acc"] <= 100.0 and 0.0 <= h["val_high_macro_f1"] <= 100.0
    # the reported model is the last epoch's: its validation numbers are the run's
    assert history[-1]["val_high_acc"] == res["val"]["high"]["acc"]
    assert history[-1]["val_high_macro_f1"] == res["val"]["high"]["macro_f1"]
