"""The scripts in examples/ run as a user runs them (offline, with a private cache)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", KMAT_PROGRESS="0", KMAT_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Run(" in proc.stdout and "low-end acc" in proc.stdout
    assert "-> " in proc.stdout  # one line per predicted image
    assert (tmp_path / "out" / "runs" / "kmat-seed1" / "result.json").is_file()
    assert "Traceback" not in proc.stderr
