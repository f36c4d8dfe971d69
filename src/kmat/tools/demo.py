"""``kmat demo``: the whole paper on the built-in SynthMed benchmark and demo backbone, on a CPU.

1. SynthMed is generated (or reused) in ``$KMAT_CACHE/synthmed-<version>-seed<S>``;
2. the demo backbone is pre-trained (or reused) in ``$KMAT_CACHE/demo_backbone-<version>``;
3. Table 2 (six methods, seeds 1 2 3, 16 shots, published recipes) and Table 3 (the eight
   ablation rows, seed 1) run through the same grid driver as ``kmat reproduce``;
4. the tables, ``results.csv`` and figures are written to the output folder and printed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from kmat.run.experiments import TABLE2_METHODS, table2_grid, table3_grid
from kmat.run.grid import GridSettings, run_grid
from kmat.tools import synthmed
from kmat.utils.cache import cache_dir

SYNTHMED_VERSION = "v1"

log = logging.getLogger(__name__)


def synthmed_dir(seed: int = 0, splits: dict[str, int] | None = None) -> Path:
    """SynthMed in the cache, written on first use (the folder name records its parameters)."""
    splits = splits or synthmed.SPLITS
    tag = "" if splits == synthmed.SPLITS else "-" + "-".join(f"{k}{v}" for k, v in splits.items())
    folder = cache_dir() / f"synthmed-{SYNTHMED_VERSION}-seed{seed}{tag}"
    done = folder / "task.json"
    if not done.is_file() or json.loads(done.read_text()).get("generator", {}).get("splits") != splits:
        synthmed.write_synthmed(folder, seed=seed, splits=splits)
    return folder


def run_demo(
    out: str | Path,
    quick: bool = False,
    backbone: str | None = None,
    epochs: int | None = None,
    splits: dict[str, int] | None = None,
    backbone_params: dict | None = None,
    device: str = "cpu",
    show_progress: bool = True,
) -> dict[str, str]:
    """Run the demo; returns the table texts. ``quick``: Table 2 with seed 1 only, no Table 3."""
    from kmat.report.results import write_report
    from kmat.tools.demo_backbone import demo_backbone_dir

    t0 = time.perf_counter()
    out = Path(out)
    where = "the CPU" if device == "cpu" else f"device {device!r}"
    log.info(
        f"kmat demo: SynthMed (synthetic mammogram -> sonogram, 3 classes) with the demo backbone, on {where}."
    )
    task = synthmed_dir(splits=splits)
    log.info(f"[data] SynthMed task: {task}")
    if backbone is None:
        backbone = f"local-dir:{demo_backbone_dir(show_progress=show_progress, **(backbone_params or {}))}"
    log.info(f"[backbone] {backbone}")
    options = {"epochs": epochs} if epochs is not None else {}
    tasks = [("synthmed", str(task))]
    seeds = [1] if quick else [1, 2, 3]
    specs = table2_grid(tasks, [m for m, _ in TABLE2_METHODS], seeds, 16, options)
    tables: tuple[int, ...] = (2,)
    if not quick:
        specs += table3_grid(tasks, [1], 16, options)
        tables = (2, 3)
    log.info(
        f"[runs] {len(specs)} runs: Table 2 (6 methods x seeds {seeds})"
        + ("" if quick else " + Table 3 (8 ablation rows, seed 1; row 8 is K-MaT's Table 2 run)")
    )
    settings = GridSettings(backbone=backbone, device=device, show_progress=show_progress)
    report = run_grid(specs, out, settings)
    texts = write_report(out, tables=tables)
    log.info(
        f"demo finished in {time.perf_counter() - t0:.0f}s"
        + (f"; {len(report.failed)} run(s) failed (see their error.json)" if report.failed else "")
    )
    return texts
