"""Run a grid of experiments, resumably: finished runs are skipped, failed runs are recorded and
the grid goes on. Every run writes ``OUT/runs/<task>/<label>/seed<S>/result.json``."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kmat.backbone import Backbone, BackboneError, load_backbone
from kmat.data.task import Task, load_task, resolve_task, task_name
from kmat.features import FeatureStore
from kmat.run.config import RunConfig, resolve_device
from kmat.run.experiments import RunSpec
from kmat.run.layout import ERROR_FILE, RESULT_FILE
from kmat.run.runner import run
from kmat.utils.io import atomic_write_json


@dataclass
class GridReport:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # dry run only


def resolve_tasks(tasks: list[str], data_root: str | None) -> list[tuple[str, str]]:
    """(run-folder name, argument) per task: the task.json name of a folder, or the name itself."""
    out = []
    for t in tasks:
        folder = resolve_task(t, data_root)
        try:
            spec = json.loads((Path(folder) / "task.json").read_text())
        except (OSError, json.JSONDecodeError):
            spec = {}  # the run reports the broken folder itself
        out.append((task_name(Path(folder), spec), str(folder)))
    return out


def is_done(run_dir: Path, spec: RunSpec, backbone_spec: str, precision: str = "fp32") -> bool:
    """A run is done when its result.json exists and was made with the same settings."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return False
    try:
        res = json.loads(path.read_text())
        cfg = res["config"]
    except (OSError, json.JSONDecodeError, KeyError):
        return False
    return (
        res.get("method") == spec.method
        and res.get("seed") == spec.seed
        and res.get("shots") == spec.shots
        and cfg.get("backbone") == backbone_spec
        and cfg.get("options", {}) == spec.options
        and cfg.get("precision", "fp32") == precision
    )


def run_grid(
    specs: list[RunSpec],
    out: str | Path,
    backbone_spec: str,
    data_root: str | None = None,
    device: str = "auto",
    dry_run: bool = False,
    show_progress: bool = True,
    backbone: Backbone | None = None,
    log=print,
    precision: str = "fp32",
    feature_cache: bool = True,
) -> GridReport:
    """Run every spec not already done; never stops on a failed run (BackboneError aside)."""
    report = GridReport()
    store = FeatureStore(disk=feature_cache)
    tasks: dict[str, Task] = {}  # each task folder read and checked once per grid
    n = len(specs)
    t_grid = time.perf_counter()
    for i, spec in enumerate(specs, start=1):
        run_dir = Path(spec.run_dir(out))
        name = f"{spec.task}/{spec.label}/seed{spec.seed}"
        if is_done(run_dir, spec, backbone_spec, precision):
            report.skipped.append(name)
            if dry_run:
                log(f"[{i}/{n}] done     {name}")
            continue
        if dry_run:
            report.pending.append(name)
            log(f"[{i}/{n}] pending  {name}  (method {spec.method}, options {spec.options or '{}'})")
            continue
        if backbone is None:
            backbone = load_backbone(backbone_spec, device=resolve_device(device))
        log(f"[{i}/{n}] running  {name}")
        t0 = time.perf_counter()
        cfg = RunConfig(
            task=spec.task_arg,
            out=str(run_dir),
            method=spec.method,
            data_root=data_root,
            backbone=backbone_spec,
            shots=spec.shots,
            seed=spec.seed,
            device=device,
            precision=precision,
            feature_cache=feature_cache,
            show_progress=show_progress,
            options=dict(spec.options),
        )
        try:
            if spec.task_arg not in tasks:
                tasks[spec.task_arg] = load_task(resolve_task(spec.task_arg, data_root))
            res = run(cfg, backbone=backbone, store=store, task=tasks[spec.task_arg])
        except (BackboneError, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - recorded, the grid goes on
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(
                run_dir / ERROR_FILE,
                {
                    "run": name,
                    "spec": asdict(spec),
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(),
                },
            )
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
            report.failed.append((name, f"{type(err).__name__}: {first}"))
            log(f"[{i}/{n}] FAILED   {name}: {type(err).__name__}: {first}")
            continue
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        report.finished.append(name)
        m = res["metrics"]
        log(
            f"[{i}/{n}] finished {name} in {time.perf_counter() - t0:.1f}s: "
            f"Hi {m['high']['acc']:.1f}  Lo {m['low']['acc']:.1f}  H {m['h']['acc']:.1f} (acc %)"
        )
    if not dry_run:
        log(
            f"grid: {len(report.finished)} run(s) finished, {len(report.skipped)} already done, "
            f"{len(report.failed)} failed, in {time.perf_counter() - t_grid:.1f}s"
        )
    return report
