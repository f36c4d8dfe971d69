"""Non-ASCII paths in a manifest are found under an ASCII locale (issue #15, C)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locales")


def test_non_ascii_image_paths_under_the_c_locale(toy_task, tmp_path):
    task = tmp_path / "tâche"
    shutil.copytree(toy_task, task)
    old, new = task / "images" / "loscan", task / "images" / "échographie"
    old.rename(new)
    manifest = task / "toy__loscan.csv"
    manifest.write_text(
        manifest.read_text().replace("images/loscan/", "images/échographie/"), encoding="utf-8"
    )
    code = (
        "import sys; from kmat.data.task import load_task; t = load_task(sys.argv[1]); "
        "print(sys.getfilesystemencoding(), len(t.low.samples), all(s.path.is_file() for s in t.low.samples))"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code, os.fsencode(task)], capture_output=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    enc, n, found = out.stdout.decode().split()
    assert enc == "ascii"  # the locale the fault needs; else the test would prove nothing
    assert int(n) > 0 and found == "True"
