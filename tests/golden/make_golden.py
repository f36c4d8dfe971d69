"""Regenerate ``tests/golden/methods.json``, the golden numbers of ``tests/test_golden.py``.

    python tests/golden/make_golden.py            # every shipped method
    python tests/golden/make_golden.py -k kmat    # only some (the others keep their numbers)

The file holds, for every shipped method, the loss history (every term, per epoch) and the metrics
of one short, seeded run on the toy task with the shipped demo backbone; ``tests/test_golden.py``
re-runs them and fails on any difference beyond float noise.

Policy: a change that moves any of these numbers (a loss term or its weight, an initialisation, the
prompt text, the schedule, the few-shot sampling, the augmentation, ...) is a change of behaviour.
It must come with this file regenerated *and* a sentence in the commit message that says why the
numbers changed. A refactor must leave the file as it is; never regenerate it only to make the test
pass.

How: the numbers are produced by ``tests/test_golden.py`` itself, run under pytest with
``KMAT_GOLDEN_WRITE=1``, so that they come from exactly the fixtures the test uses (the demo backbone
and the toy task of ``tests/conftest.py``) and from the same run settings. Extra arguments are
passed to pytest. Review the result with ``git diff tests/golden/methods.json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST = ROOT / "tests" / "test_golden.py"
GOLDEN = Path(__file__).resolve().parent / "methods.json"


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else argv
    env = {**os.environ, "KMAT_GOLDEN_WRITE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEST), *extra]
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    if code == 0:
        print(f"wrote {GOLDEN.relative_to(ROOT)}; review it with: git diff {GOLDEN.relative_to(ROOT)}")
    else:
        print(
            f"make_golden: pytest exited with {code}; {GOLDEN.name} may not have been written",
            file=sys.stderr,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
