"""A 16-run grid (4 methods x 4 seeds, the SynthMed demo task, the shipped demo backbone, 16 shots, each
method's published recipe) through the local executor and through Ray: wall time and runs per minute.

Not a test: it measures (recorded in the README, "Run on a cluster"). Every mode starts from an empty
output folder and without the disk feature cache (each mode encodes its own features; a Ray worker
keeps the features it computed for its next run, as the local grid does in its process). A Ray mode
starts its own local Ray instance, and that start is part of its wall time.

    python benchmarks/ray_grid.py                          # local, ray with 1 worker, ray with 2 workers
    python benchmarks/ray_grid.py --modes local ray:2 --epochs 2
    python benchmarks/ray_grid.py --device cuda --gpus-per-run 1 0.5 0.25 0.125   # runs per GPU 1/2/4/8

Modes: ``local``; ``ray:N`` (at most N runs in flight, 1 CPU each); with ``--gpus-per-run G ...`` one
``ray-gpu:G`` mode per value (as many runs in flight as the GPUs hold). ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

METHODS = ["coop", "kgcoop", "biomedcoop", "kmat"]
SEEDS = [1, 2, 3, 4]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", nargs="+", default=["local", "ray:1", "ray:2"])
    ap.add_argument(
        "--gpus-per-run", nargs="+", type=float, default=[], help="adds one ray-gpu mode per value"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--epochs", type=int, default=None, help="override every method's epochs (default: its own)"
    )
    ap.add_argument(
        "--task", default=None, help="a task folder (default: SynthMed's synthmed pair, generated)"
    )
    ap.add_argument("--backbone", default=None, help="default: the shipped demo backbone")
    ap.add_argument("--work", default=None, help="where the grids are written (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("KMAT_PROGRESS", "0")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from kmat.run.experiments import table2_grid
    from kmat.run.grid import GridSettings, resolve_tasks, run_grid

    if args.task is None:
        from kmat.tools.demo import synth_task_dir
        from kmat.tools.synthpairs import pairs

        task = str(synth_task_dir(pairs()["synthmed"]))
    else:
        task = args.task
    if args.backbone is None:
        import kmat

        args.backbone = f"local-dir:{Path(kmat.__file__).parent / 'assets' / 'demo_backbone'}"
    options = {"epochs": args.epochs} if args.epochs is not None else {}
    specs = table2_grid(resolve_tasks([task], None), METHODS, SEEDS, 16, options)
    modes = list(args.modes) + [f"ray-gpu:{g:g}" for g in args.gpus_per_run]
    work = Path(args.work or tempfile.mkdtemp(prefix="kmat-ray-grid-"))
    print(
        f"{len(specs)} runs ({len(METHODS)} methods x {len(SEEDS)} seeds), task {task}, backbone "
        f"{args.backbone}, device {args.device}, {os.cpu_count()} CPU(s); modes {' '.join(modes)}"
    )
    rows = []
    for mode in modes:
        executor = None
        if mode.startswith("ray"):
            from kmat.tools.ray_executor import RayExecutor

            kind, _, value = mode.partition(":")
            if kind == "ray-gpu":
                executor = RayExecutor(gpus_per_run=float(value), cpus_per_run=1.0)
            else:
                executor = RayExecutor(workers=int(value), cpus_per_run=1.0)
        elif mode != "local":
            raise SystemExit(f"unknown mode {mode!r}")
        out = work / mode.replace(":", "-")
        shutil.rmtree(out, ignore_errors=True)
        settings = GridSettings(
            backbone=args.backbone, device=args.device, feature_cache=False, show_progress=False
        )
        t0 = time.perf_counter()
        report = run_grid(specs, out, settings, executor=executor)
        wall = time.perf_counter() - t0
        rows.append(
            {
                "mode": mode,
                "wall_s": wall,
                "finished": len(report.finished),
                "failed": len(report.failed),
                "runs_per_min": 60 * len(report.finished) / wall,
            }
        )
        print(
            f"{mode:12s} {wall:8.1f} s  {rows[-1]['runs_per_min']:6.1f} runs/min  "
            f"({len(report.finished)} finished, {len(report.failed)} failed)",
            flush=True,
        )
    base = next((r["wall_s"] for r in rows if r["mode"] == "local"), None)
    print("\nmode          wall s   runs/min   wall / local")
    for r in rows:
        ratio = f"{r['wall_s'] / base:.2f}" if base else "-"
        print(f"{r['mode']:12s} {r['wall_s']:8.1f} {r['runs_per_min']:10.1f}   {ratio:>12s}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"runs": len(specs), "device": args.device, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
