"""A corrupt training image stops the run before training, naming the file (issue #15, C)."""

from __future__ import annotations

import pytest

import kmat.run.runner as runner
from kmat.errors import ImageError
from kmat.run.config import RunConfig


def test_corrupt_training_image_is_found_before_training(tiny_model_dir, toy_task, tmp_path, monkeypatch):
    bad = sorted((toy_task / "images" / "hiscan").glob("benign_train_*.png"))
    for b in bad[:2]:
        b.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    trained = []
    monkeypatch.setattr(runner, "train", lambda *a, **k: trained.append(1))
    cfg = RunConfig(
        task=str(toy_task),
        method="coop",
        out=str(tmp_path / "run"),
        backbone=f"local-dir:{tiny_model_dir}",
        device="cpu",
        show_progress=False,
        options={"epochs": 1},
    )
    with pytest.raises(ImageError) as info:
        runner.run(cfg)
    msg = str(info.value)
    assert "2 unreadable training image(s)" in msg
    assert bad[0].name in msg and bad[1].name in msg
    assert trained == []
    assert not (tmp_path / "run" / "result.json").exists()
