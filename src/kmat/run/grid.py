"""Run a grid of experiments, resumably: finished runs are skipped, failed runs are recorded and
the grid goes on. Every run writes its folder ``OUT/runs/<task>/<label>/<shots>shot[-<tag>]/seed<S>``
(:mod:`kmat.run.layout`)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kmat.backbone import Backbone, BackboneError, load_backbone
from kmat.data.fingerprint import check_content_leaks
from kmat.data.task import Task, load_task, resolve_task, task_name
from kmat.errors import KmatError, OutputError, RunBusyError
from kmat.features import FeatureStore
from kmat.methods.config import options_of
from kmat.run.config import RunConfig
from kmat.run.device import resolve_device
from kmat.run.executor import LocalExecutor, RemoteExecutor, RunFailure, RunJob
from kmat.run.experiments import RunSpec
from kmat.run.layout import RunLayout
from kmat.run.lock import run_lock
from kmat.run.runner import (
    config_differences,
    existing_identity,
    read_descriptions,
    resolve_method_config,
    run,
    run_identity,
    stale_inputs,
    write_run,
)
from kmat.utils.io import atomic_write_json, check_output_folder, output_errors, probe_writable

log = logging.getLogger(__name__)


@dataclass
class GridReport:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # dry run only
    busy: list[str] = field(default_factory=list)  # being written by another process: left to it


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


def _run_config(spec: RunSpec, out: str | Path, settings: GridSettings) -> RunConfig:
    return RunConfig(
        task=spec.task_arg,
        out=str(spec.run_dir(out)),
        method=spec.method,
        data_root=settings.data_root,
        backbone=settings.backbone,
        shots=spec.shots,
        seed=spec.seed,
        device=settings.device,
        precision=settings.precision,
        feature_cache=settings.feature_cache,
        show_progress=settings.show_progress,
        options=dict(spec.options),
    )


def done_state(cfg: RunConfig, task: Task, backbone: Backbone | None) -> tuple[bool, str]:
    """Whether ``cfg``'s run is done: its folder holds a result of the same configuration made from
    the same inputs (backbone weights, when ``backbone`` is given, and task data). Else why not:
    ``""`` (no finished run there), the stale inputs, or the configuration's differences."""
    existing = existing_identity(cfg.out)
    if existing is None:
        return False, ""
    expected = run_identity(cfg, task, resolve_method_config(cfg, task), backbone)
    config = config_differences(existing, expected)
    if config:
        return False, "another configuration: " + "; ".join(config[:3])
    stale = stale_inputs(existing, expected)
    return (False, "stale: " + "; ".join(stale)) if stale else (True, "")


def is_done(cfg: RunConfig, task: Task, backbone: Backbone | None = None) -> bool:
    """A run is done when its folder holds a result of the same configuration and inputs."""
    return done_state(cfg, task, backbone)[0]


def record_failure(
    run_dir: Path, name: str, spec: RunSpec, err: BaseException, tb: str | None = None
) -> None:
    """Write the failed run's ``error.json`` (the error and its traceback: ``tb``, or the one being
    handled); :class:`OutputError` when it cannot be written."""
    with output_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        RunLayout.of(run_dir).error,
        {
            "run": name,
            "spec": asdict(spec),
            "error": f"{type(err).__name__}: {err}",
            "traceback": tb if tb is not None else traceback.format_exc(),
        },
    )


def _run_default(name: str) -> Any:
    return options_of(RunConfig)[name].default


@dataclass
class GridSettings:
    """What every run of a grid shares (defaults: :class:`RunConfig`'s)."""

    backbone: str = field(default_factory=lambda: _run_default("backbone"))
    data_root: str | None = None
    device: str = field(default_factory=lambda: _run_default("device"))
    precision: str = field(default_factory=lambda: _run_default("precision"))
    feature_cache: bool = field(default_factory=lambda: _run_default("feature_cache"))
    show_progress: bool = True
    overwrite: bool = False  # replace runs of another configuration in the same folders


def _record(
    report: GridReport,
    out: str | Path,
    run_dir: Path,
    spec: RunSpec,
    err: BaseException,
    tb: str | None,
    at: str,
) -> None:
    """A failed run: its ``error.json`` written, the report and the log told. When neither the run
    nor its ``error.json`` can be written the grid stops (:class:`OutputError`)."""
    name = spec.name
    try:
        record_failure(run_dir, name, spec, err, tb)
    except OutputError as unrecorded:
        if isinstance(err, OutputError):  # neither the run nor its error.json: every run would fail
            raise OutputError(
                out,
                f"the grid stops: run {name} could not be written ({err.reason}), nor its "
                f"{RunLayout.of(run_dir).error.name}",
                field="out",
            ) from err
        log.warning("%s: the failure of run %s is not recorded: %s", run_dir, name, unrecorded)
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    report.failed.append((name, f"{type(err).__name__}: {first}"))
    log.info("%s FAILED   %s: %s: %s", at, name, type(err).__name__, first)


def _finished(report: GridReport, run_dir: Path, name: str, res: dict, seconds: float, at: str) -> None:
    with contextlib.suppress(OSError):  # a stale record of an earlier failure
        RunLayout.of(run_dir).error.unlink(missing_ok=True)
    report.finished.append(name)
    m = res["metrics"]
    log.info(
        "%s finished %s in %.1fs: Hi %.1f  Lo %.1f  H %.1f (acc %%)",
        at,
        name,
        seconds,
        m["high"]["acc"],
        m["low"]["acc"],
        m["h"]["acc"],
    )


def _summary(report: GridReport, t_grid: float) -> None:
    log.info(
        "grid: %d run(s) finished, %d already done, %d failed, in %.1fs%s",
        len(report.finished),
        len(report.skipped),
        len(report.failed),
        time.perf_counter() - t_grid,
        f"; {len(report.busy)} left to another process running them" if report.busy else "",
    )


def run_grid(
    specs: list[RunSpec],
    out: str | Path,
    settings: GridSettings,
    dry_run: bool = False,
    backbone: Backbone | None = None,
    executor: LocalExecutor | RemoteExecutor | None = None,
) -> GridReport:
    """Run every spec not already done; never stops on a failed run (BackboneError aside, and an
    :class:`OutputError` when ``out`` itself cannot be written: checked first, and when a run and
    its ``error.json`` both cannot be written). An ``error.json`` that cannot be written is logged.

    ``executor``: where the runs are computed (:mod:`kmat.run.executor`; default: here, one after
    another). A remote executor computes them elsewhere; this process still decides what is done,
    holds the runs' locks and writes every run folder.

    Progress is logged (``logging``, logger ``kmat.run.grid``), one line per run.
    """
    report = GridReport()
    if dry_run:
        check_output_folder(out)
    else:  # a read-only, forbidden or misplaced output folder: one error, not one per run
        probe_writable(out)
    if isinstance(executor, RemoteExecutor) and not dry_run:
        return _run_grid_remote(specs, out, settings, backbone, executor, report)
    store = FeatureStore(disk=settings.feature_cache)
    tasks: dict[str, Task] = {}  # each task folder read and checked once per grid
    n = len(specs)
    t_grid = time.perf_counter()
    for i, spec in enumerate(specs, start=1):
        cfg = _run_config(spec, out, settings)
        run_dir = Path(cfg.out)
        name = spec.name
        try:
            if spec.task_arg not in tasks:
                tasks[spec.task_arg] = load_task(resolve_task(spec.task_arg, settings.data_root))
            task = tasks[spec.task_arg]
            if backbone is None and RunLayout.of(run_dir).exists():  # its weights decide "done" too
                backbone = load_backbone(settings.backbone, device=resolve_device(settings.device))
            done, why = done_state(cfg, task, backbone)
        except BackboneError:
            raise
        except KmatError as err:
            task, done, why = None, False, ""
            if dry_run:
                report.pending.append(name)
                log.info("[%d/%d] pending  %s  (cannot be run as it is: %s)", i, n, name, err)
                continue
        if done:
            report.skipped.append(name)
            if not dry_run:  # a failure recorded by an earlier attempt is stale beside a finished run
                RunLayout.of(run_dir).error.unlink(missing_ok=True)
            if dry_run:
                log.info("[%d/%d] done     %s", i, n, name)
            continue
        if dry_run:
            report.pending.append(name)
            note = (
                "; its folder holds a run of another configuration, replaced only with overwrite"
                if RunLayout.of(run_dir).exists() and not settings.overwrite
                else ""
            )
            log.info(
                "[%d/%d] pending  %s  (method %s, options %s%s)",
                i,
                n,
                name,
                spec.method,
                spec.options or "{}",
                f"; {why}" if why.startswith("stale") else note,
            )
            continue
        if backbone is None:
            backbone = load_backbone(settings.backbone, device=resolve_device(settings.device))
        if why.startswith("stale"):
            log.info("[%d/%d] redoing  %s (its finished run is stale; the reason follows)", i, n, name)
        else:
            log.info("[%d/%d] running  %s", i, n, name)
        t0 = time.perf_counter()
        try:
            if task is None:  # the task failed to load above: raise its error again, here
                task = load_task(resolve_task(spec.task_arg, settings.data_root))
            with run_lock(run_dir):
                if done_state(cfg, task, backbone)[0]:  # finished by another process meanwhile
                    report.skipped.append(name)
                    log.info("[%d/%d] done     %s (by another process meanwhile)", i, n, name)
                    continue
                res = run(
                    cfg, backbone=backbone, store=store, task=task, overwrite=settings.overwrite, locked=True
                )
        except RunBusyError:
            report.busy.append(name)
            log.info("[%d/%d] busy     %s: another kmat process is running it; left to it", i, n, name)
            continue
        except (BackboneError, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - recorded, the grid goes on
            _record(report, out, run_dir, spec, err, None, f"[{i}/{n}]")
            continue
        _finished(report, run_dir, name, res, time.perf_counter() - t0, f"[{i}/{n}]")
    if not dry_run:
        _summary(report, t_grid)
    return report


def _run_grid_remote(
    specs: list[RunSpec],
    out: str | Path,
    settings: GridSettings,
    backbone: Backbone | None,
    executor: RemoteExecutor,
    report: GridReport,
) -> GridReport:
    """:func:`run_grid` with the runs computed by ``executor``: this process checks which runs are
    done, takes the lock of every run it hands out (held until its folder is written), and writes
    each run as its output comes back. Interrupted, it cancels what is still out (the executor) and
    releases every lock: only the runs written so far stay, and a rerun resumes from them."""
    tasks: dict[str, Task] = {}
    checked: dict[str, dict[str, dict[str, list[str]]] | None] = {}  # task -> its descriptions
    n = len(specs)
    t_grid = time.perf_counter()
    jobs: list[RunJob] = []
    by_index: dict[int, RunSpec] = {}
    locks: dict[int, contextlib.ExitStack] = {}
    try:
        for i, spec in enumerate(specs, start=1):
            cfg = _run_config(spec, out, settings)
            run_dir = Path(cfg.out)
            at = f"[{i}/{n}]"
            try:
                if spec.task_arg not in tasks:
                    tasks[spec.task_arg] = load_task(resolve_task(spec.task_arg, settings.data_root))
                task = tasks[spec.task_arg]
                if backbone is None:  # its weights decide "done", and are part of every run's identity
                    backbone = load_backbone(settings.backbone, device=resolve_device(settings.device))
                if done_state(cfg, task, backbone)[0]:
                    report.skipped.append(spec.name)
                    continue
                hold = contextlib.ExitStack()
                hold.enter_context(run_lock(run_dir))
                locks[i] = hold
                if done_state(cfg, task, backbone)[0]:  # finished by another process meanwhile
                    locks.pop(i).close()
                    report.skipped.append(spec.name)
                    log.info("%s done     %s (by another process meanwhile)", at, spec.name)
                    continue
                if spec.task_arg not in checked:  # what each run would check of its task, once per task
                    check_content_leaks(task)
                    checked[spec.task_arg] = read_descriptions(cfg, task)
                method_config = resolve_method_config(cfg, task)
                identity = run_identity(cfg, task, method_config, backbone)
            except RunBusyError:
                report.busy.append(spec.name)
                log.info("%s busy     %s: another kmat process is running it; left to it", at, spec.name)
                continue
            except BackboneError:
                raise
            except KmatError as err:  # the task cannot be read or used: recorded like a failed run
                if i in locks:
                    locks.pop(i).close()
                _record(report, out, run_dir, spec, err, None, at)
                continue
            jobs.append(
                RunJob(
                    index=i,
                    name=spec.name,
                    cfg=cfg,
                    task=task,
                    identity=identity,
                    descriptions=checked[spec.task_arg],
                )
            )
            by_index[i] = spec
        if jobs:
            log.info("%d run(s) handed to the %s executor", len(jobs), executor.name)
        m = len(jobs)
        with contextlib.closing(executor.results(jobs)) as results:
            for k, (job, outcome) in enumerate(results, start=1):
                spec, run_dir = by_index[job.index], Path(job.cfg.out)
                at = f"[{k}/{m}]"
                try:
                    if isinstance(outcome, RunFailure):
                        _record(report, out, run_dir, spec, outcome.error, outcome.traceback, at)
                        continue
                    try:
                        res = write_run(job.cfg, outcome, overwrite=settings.overwrite)
                    except KeyboardInterrupt:
                        raise
                    except Exception as err:  # noqa: BLE001 - recorded, the grid goes on
                        _record(report, out, run_dir, spec, err, None, at)
                        continue
                    _finished(report, run_dir, job.name, res, float(res["timing"]["total_s"]), at)
                finally:
                    locks.pop(job.index).close()
    finally:
        for hold in locks.values():
            hold.close()
    _summary(report, t_grid)
    return report
