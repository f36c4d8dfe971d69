"""Grid runs as Ray tasks (``--executor ray``): one task per run, with the resources asked for
(``--cpus-per-run``, ``--gpus-per-run``; fractions share a GPU), on a local Ray instance or a cluster.

A task computes its run (:func:`kmat.run.runner.compute_run`: the frozen features, training, the
evaluation) and returns the result and the learned tensors; the driver writes the run folder
(:func:`kmat.run.grid.run_grid`). Each task encodes the image features its run needs itself: the
worker process keeps the backbone and the features it has computed in memory for the next run it
gets (and in the node's feature cache with ``--feature-cache``), so a worker that gets several runs of
one (task, shots, seed) group encodes its images once. Features are not shipped between nodes.

Faults: an error raised by a run comes back as its failure (recorded in its ``error.json``); a worker
process or node that dies takes its run with it and Ray runs it again, up to ``max_retries`` times;
closing the results early (Ctrl-C on the driver) cancels the tasks still out.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Generator
from pathlib import Path
from typing import Any

from kmat.errors import ConfigError
from kmat.run.executor import RunFailure, RunJob
from kmat.run.runner import RunOutput, compute_run

KILL_ONCE_ENV = "KMAT_TEST_KILL_WORKER_ONCE"  # tests only: a marker file path; see _compute

_WORKER: dict[str, Any] = {}  # per worker process: the backbones and the feature store it keeps


def ray_missing_error(err: BaseException | None = None) -> ConfigError:
    why = f" ({err})" if err is not None else ""
    return ConfigError(
        f"--executor ray needs Ray, which is not installed{why}: pip install 'kmat[cluster]'",
        field="executor",
    )


def import_ray() -> Any:
    """The ``ray`` module; without it (the ``cluster`` extra not installed) a one-line
    :class:`ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ray_missing_error(err) from None
    return ray


def _compute(cfg: Any, task: Any, kill_marker: str | None) -> RunOutput:
    """The body of a run's Ray task (in a worker process)."""
    from kmat.backbone import load_backbone
    from kmat.features import FeatureStore
    from kmat.run.device import resolve_device

    os.environ["KMAT_PROGRESS"] = "0"  # no worker bars: the driver prints one line per finished run

    def maybe_die(*_: Any) -> None:  # tests: the first run to get here dies as a killed worker would
        if kill_marker and not Path(kill_marker).exists():
            Path(kill_marker).write_text(f"{os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    key = f"{cfg.backbone}|{resolve_device(cfg.device)}"
    backbones = _WORKER.setdefault("backbones", {})
    if key not in backbones:
        backbones[key] = load_backbone(cfg.backbone, device=resolve_device(cfg.device))
    stores = _WORKER.setdefault("stores", {})
    if cfg.feature_cache not in stores:
        stores[cfg.feature_cache] = FeatureStore(disk=cfg.feature_cache)
    return compute_run(
        cfg, backbone=backbones[key], store=stores[cfg.feature_cache], task=task, before_training=maybe_die
    )


def _remote_traceback(err: BaseException) -> str:
    """The traceback of a run that raised on a worker, as Python prints it (no terminal colours)."""
    text = str(getattr(err, "traceback_str", "") or err)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if not text.lstrip().startswith("Traceback"):
        text = f"Traceback (on a Ray worker):\n{text}"
    return text


class RayExecutor:
    """Runs as Ray tasks. ``address``: ``None`` starts a local Ray instance (``num_cpus``: its CPUs,
    default all), ``"auto"`` or ``HOST:PORT`` joins a running cluster; an already initialised Ray
    (this process called ``ray.init``) is used as it is. ``workers`` caps the runs in flight."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        workers: int | None = None,
        max_retries: int = 2,
        num_cpus: int | None = None,
    ) -> None:
        import_ray()
        if cpus_per_run < 0 or gpus_per_run < 0:
            raise ConfigError("--cpus-per-run and --gpus-per-run cannot be negative")
        if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
            raise ConfigError(f"--gpus-per-run {gpus_per_run:g}: above 1, a whole number of GPUs")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: at least 1")
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.workers = workers
        self.max_retries = max_retries
        self.num_cpus = num_cpus

    def _start(self) -> bool:
        """Connect to (or start) Ray; whether this call started it (and so shuts it down)."""
        ray = import_ray()
        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.address is None:
            kw["num_cpus"] = self.num_cpus
        else:
            kw["address"] = self.address
        try:
            ray.init(**kw)
        except ConnectionError as err:
            raise ConfigError(
                f"--ray-address {self.address}: no Ray cluster there ({err}); start one with "
                "`ray start --head`, or leave --ray-address out to start a local one",
                field="ray_address",
            ) from err
        return True

    def results(self, jobs: list[RunJob]) -> Generator[tuple[RunJob, RunOutput | RunFailure], None, None]:
        if not jobs:
            return
        ray = import_ray()
        started = self._start()
        remote = ray.remote(_compute).options(
            num_cpus=self.cpus_per_run,
            num_gpus=self.gpus_per_run,
            max_retries=self.max_retries,
            retry_exceptions=False,  # a run that raises fails; only a dead worker is retried
        )
        kill_marker = os.environ.get(KILL_ONCE_ENV)
        task_refs: dict[str, Any] = {}  # each task's description put in the object store once
        todo = list(jobs)
        out: dict[Any, RunJob] = {}
        try:
            while todo or out:
                while todo and (self.workers is None or len(out) < self.workers):
                    job = todo.pop(0)
                    if job.cfg.task not in task_refs:
                        task_refs[job.cfg.task] = ray.put(job.task)
                    out[remote.remote(job.cfg, task_refs[job.cfg.task], kill_marker)] = job
                ready, _ = ray.wait(list(out), num_returns=1)
                ref = ready[0]
                job = out.pop(ref)
                try:
                    outcome: RunOutput | RunFailure = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # the run raised: its own error
                    cause = err.cause if isinstance(err.cause, BaseException) else err
                    outcome = RunFailure(cause, _remote_traceback(err))
                except ray.exceptions.RayError as err:  # a worker or node lost past the retries
                    outcome = RunFailure(err, f"{type(err).__name__}: {err}")
                yield job, outcome
        finally:
            for ref in out:  # interrupted: what is still out is cancelled, nothing of it is written
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001, S110 - already finished or gone
                    pass
            if started:
                ray.shutdown()
