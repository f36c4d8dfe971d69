"""``kmat demo``: the whole paper on the built-in SynthMed benchmark and demo backbone, on a CPU.

1. SynthMed's two pairs are generated (or reused) in ``$KMAT_CACHE/<task>-<version>-seed<S>``:
   ``synthmed`` (mammogram -> sonogram, far-domain; :mod:`kmat.tools.synthmed`) and ``synthderm``
   (dermoscopy image -> clinical photograph, near-domain; :mod:`kmat.tools.synthderm`);
2. the demo backbone (pre-trained on captions of both pairs) is the shipped copy, or pre-trained
   once into ``$KMAT_CACHE/demo_backbone-<version>``;
3. Table 2 (six methods, seeds 1 2 3, 16 shots, published recipes; both tasks and their Avg.) and
   Table 3 (the eight ablation rows, seed 1, averaged over both tasks) run through the same grid
   driver as ``kmat reproduce``; ``quick``: Table 2 with seed 1 only; ``wide``: Table 2+ (every
   registered method, the paper's six first) instead of Table 2;
4. the tables, ``results.csv`` and figures are written to the output folder and printed.

Measured on a 2-core CPU from an empty cache with the shipped backbone: see the README ("The demo").
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from kmat.errors import OutputError
from kmat.run.executor import RemoteExecutor
from kmat.run.experiments import TABLE2_METHODS, table2_grid, table2_plus_methods, table3_grid
from kmat.run.grid import GridSettings, run_grid
from kmat.tools.synthmed import SynthPair, write_task
from kmat.tools.synthpairs import pairs
from kmat.utils.cache import cache_dir, cache_needed_error

log = logging.getLogger(__name__)


def synth_task_dir(pair: SynthPair, seed: int = 0, splits: dict[str, int] | None = None) -> Path:
    """A SynthMed pair's task folder in the cache, written on first use (the folder name records
    its parameters: ``<task>-<version>-seed<S>[-train<N>-val<N>-test<N>]``)."""
    splits = splits or pair.splits
    tag = "" if splits == pair.splits else "-" + "-".join(f"{k}{v}" for k, v in splits.items())
    folder = cache_dir() / f"{pair.task}-{pair.version}-seed{seed}{tag}"
    done = folder / "task.json"
    if not done.is_file() or json.loads(done.read_text()).get("generator", {}).get("splits") != splits:
        try:
            write_task(pair, folder, seed=seed, splits=splits)
        except (
            OSError,
            OutputError,
        ) as err:  # a read-only or full cache: the demo cannot go on without its data
            raise cache_needed_error(folder, err) from err
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
    executor: RemoteExecutor | None = None,
    wide: bool = False,
) -> dict[str, str]:
    """Run the demo; returns the table texts. ``quick``: Table 2 with seed 1 only, no Table 3.
    ``splits`` (images per class and split) applies to both pairs; default: each pair's own.
    ``wide``: Table 2+ (:func:`kmat.run.experiments.table2_plus_methods`) instead of the paper's six."""
    from kmat.report.results import write_report
    from kmat.tools.demo_backbone import demo_backbone_dir

    t0 = time.perf_counter()
    out = Path(out)
    where = "the CPU" if device == "cpu" else f"device {device!r}"
    synth = pairs()
    log.info(
        "kmat demo: SynthMed ("
        + "; ".join(
            f"{p.task}: {p.modalities['high'][1]} -> {p.modalities['low'][1]}, {len(p.classes)} classes"
            for p in synth.values()
        )
        + f") with the demo backbone, on {where}."
    )
    tasks = []
    for name, pair in synth.items():
        folder = synth_task_dir(pair, splits=splits)
        log.info(f"[data] {name}: {folder}")
        tasks.append((name, str(folder)))
    if backbone is None:
        backbone = f"local-dir:{demo_backbone_dir(show_progress=show_progress, **(backbone_params or {}))}"
    log.info(f"[backbone] {backbone}")
    options = {"epochs": epochs} if epochs is not None else {}
    seeds = [1] if quick else [1, 2, 3]
    methods = table2_plus_methods()[0] if wide else [m for m, _ in TABLE2_METHODS]
    specs = table2_grid(tasks, methods, seeds, 16, options)
    tables: tuple[int, ...] = (2,)
    if not quick:
        specs += table3_grid(tasks, [1], 16, options)
        tables = (2, 3)
    log.info(
        f"[runs] {len(specs)} runs: Table 2{'+' if wide else ''} ({len(tasks)} tasks x {len(methods)} "
        f"methods x seeds {seeds})"
        + ("" if quick else " + Table 3 (8 ablation rows, seed 1; row 8 is K-MaT's Table 2 run)")
    )
    settings = GridSettings(backbone=backbone, device=device, show_progress=show_progress)
    report = run_grid(specs, out, settings, executor=executor)
    texts = write_report(out, tables=tables)
    log.info(
        f"demo finished in {time.perf_counter() - t0:.0f}s"
        + (f"; {len(report.failed)} run(s) failed (see their error.json)" if report.failed else "")
    )
    return texts
