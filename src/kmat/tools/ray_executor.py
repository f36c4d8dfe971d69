"""Grid runs as Ray tasks (``--executor ray``): one task per run, with the resources asked for
(``--cpus-per-run``, ``--gpus-per-run``; fractions share a GPU), on a local Ray instance or a cluster.
:class:`RayTasks` is the machinery underneath (start Ray, submit, take outcomes as they finish,
cancel); ``kmat tune``'s trials use it too (:mod:`kmat.tools.ray_trials`).

Features are computed once and shipped: one Ray task per task folder encodes its test and
validation images, one per (task, shots, seed) group encodes the training views (as many as the
group's longest run needs); their results go through Ray's object store to the group's training
tasks, one per run, which read no file of the task (the driver hands them the run's identity and the
task's descriptions) and return the result and the learned tensors. The driver writes every run
folder (:func:`kmat.run.grid.run_grid`). A worker process keeps the backbone it loaded for its next
task.

Faults: an error raised by a run comes back as its failure (recorded in its ``error.json``); a worker
process or node that dies takes its run with it and Ray runs it again, up to ``max_retries`` times;
closing the results early (Ctrl-C on the driver) cancels the tasks still out.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from kmat.errors import ConfigError
from kmat.run.executor import RunFailure, RunJob
from kmat.run.runner import (
    RunInputs,
    RunOutput,
    SplitFeatures,
    ViewFeatures,
    compute_run,
    encode_splits,
    encode_views,
    feature_keys,
    views_needed,
)

RAY_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
"""Resources Ray defines itself: not a name for ``--data-resource``."""
DATA_RESOURCE_SLIVER = 0.001  # what a feature task asks of the data resource: never the limit
KILL_ONCE_ENV = "KMAT_TEST_KILL_WORKER_ONCE"  # tests only: a marker file path; see _train

_WORKER: dict[str, Any] = {}  # per worker process: the backbones and the feature store it keeps


def ray_missing_error(err: BaseException | None = None) -> ConfigError:
    why = f" ({err})" if err is not None else ""
    return ConfigError(
        f"Ray is not installed{why}; it comes with the cluster extra: pip install 'kmat[cluster]'"
    )


def import_ray() -> Any:
    """The ``ray`` module; without it (the ``cluster`` extra not installed) a one-line
    :class:`ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ray_missing_error(err) from None
    return ray


def _worker_backbone_and_store(cfg: Any) -> tuple[Any, Any]:
    """This worker process's backbone for ``cfg`` (loaded once) and its feature store."""
    from kmat.backbone import load_backbone
    from kmat.features import FeatureStore
    from kmat.run.device import resolve_device

    os.environ["KMAT_PROGRESS"] = "0"  # no worker bars: the driver prints one line per finished run
    key = f"{cfg.backbone}|{resolve_device(cfg.device)}"
    backbones = _WORKER.setdefault("backbones", {})
    if key not in backbones:
        backbones[key] = load_backbone(cfg.backbone, device=resolve_device(cfg.device))
    stores = _WORKER.setdefault("stores", {})
    if cfg.feature_cache not in stores:
        stores[cfg.feature_cache] = FeatureStore(disk=cfg.feature_cache)
    return backbones[key], stores[cfg.feature_cache]


def maybe_die(kill_marker: str | None) -> None:
    """Tests only (:data:`KILL_ONCE_ENV`): the first task to get here, before training, dies as a
    killed worker would (SIGKILL), leaving ``kill_marker`` behind so that its retry lives."""
    if kill_marker and not Path(kill_marker).exists():
        Path(kill_marker).write_text(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def _encode_splits(cfg: Any, task: Any) -> SplitFeatures:
    """A feature task: the test and validation features of a task (reads its images)."""
    backbone, store = _worker_backbone_and_store(cfg)
    return encode_splits(cfg, task, backbone, store)


def _encode_views(cfg: Any, task: Any, n_views: int) -> ViewFeatures:
    """A feature task: the training views of a (task, shots, seed) group (reads its images)."""
    backbone, store = _worker_backbone_and_store(cfg)
    return encode_views(cfg, task, n_views, backbone, store)


def _train(
    cfg: Any,
    task: Any,
    identity: dict[str, Any],
    descriptions: Any,
    splits: SplitFeatures,
    views: ViewFeatures,
    kill_marker: str | None,
) -> RunOutput:
    """A run's task: train and evaluate on the features it is given (reads no image)."""
    backbone, store = _worker_backbone_and_store(cfg)
    inputs = RunInputs(identity=identity, descriptions=descriptions, splits=splits, views=views)
    return compute_run(
        cfg,
        backbone=backbone,
        store=store,
        task=task,
        before_training=lambda *_: maybe_die(kill_marker),
        inputs=inputs,
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
    (this process called ``ray.init``) is used as it is. ``workers`` caps the runs in flight.

    ``data_resource``: the name of a Ray custom resource that the nodes holding the datasets offer
    (``ray start ... --resources '{"kmat_data": 1}'``): the feature tasks, which read the images,
    ask for a sliver of it and so run only there; training runs, which read no image, go anywhere.
    Without it a feature task may land on any node, and every node needs the datasets."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        workers: int | None = None,
        max_retries: int = 2,
        num_cpus: int | None = None,
        data_resource: str | None = None,
    ) -> None:
        import_ray()
        if cpus_per_run < 0 or gpus_per_run < 0:
            raise ConfigError("the CPUs and GPUs per run cannot be negative")
        if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
            raise ConfigError(f"{gpus_per_run:g} GPUs per run: above 1, a whole number of GPUs")
        if workers is not None and workers < 1:
            raise ConfigError(f"{workers} runs at a time: at least 1")
        if max_retries < 0:
            raise ConfigError(f"{max_retries} retries: 0 or more")
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.workers = workers
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        if data_resource is not None:
            data_resource = data_resource.strip()
            if not data_resource:
                raise ConfigError("the data resource needs a name (e.g. kmat_data)")
            if data_resource in RAY_BUILTIN_RESOURCES:
                raise ConfigError(
                    f"the data resource {data_resource!r} is one of Ray's own resources; name a custom "
                    "one (e.g. kmat_data) that the nodes holding the datasets offer"
                )
        self.data_resource = data_resource

    def _start(self) -> bool:
        """Connect to (or start) Ray; whether this call started it (and so shuts it down)."""
        ray = import_ray()
        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.address is None:
            kw["num_cpus"] = self.num_cpus
            if self.data_resource:  # this machine reads the images: it offers the resource
                kw["resources"] = {self.data_resource: 1}
        else:
            kw["address"] = self.address
        try:
            ray.init(**kw)
        except ConnectionError as err:
            raise ConfigError(
                f"no Ray cluster at {self.address} ({err}); start one there with `ray start --head`, "
                "or let kmat start a local one (no address)"
            ) from err
        return True

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Ray started (or joined) for the block, and shut down after it if this call started it:
        the tasks of several :class:`RayTasks` (a tune's trials, then its final runs) share one
        Ray instance."""
        started = self._start()
        try:
            yield
        finally:
            if started:
                import_ray().shutdown()

    def results(self, jobs: list[RunJob]) -> Generator[tuple[RunJob, RunOutput | RunFailure], None, None]:
        if not jobs:
            return
        # features: one task per task (test and validation images) and one per (task, shots, seed)
        # group (training views, as many as its longest run needs), handed to the group's runs
        # through the object store; dropped once the last run that reads them is back
        n_views: dict[tuple, int] = {}
        readers: Counter[tuple] = Counter()
        for job in jobs:
            split_key, view_key = feature_keys(job.cfg)
            n_views[view_key] = max(n_views.get(view_key, 0), views_needed(job.cfg, job.task))
            readers[split_key] += 1
            readers[view_key] += 1
        todo = list(jobs)
        with contextlib.closing(RayTasks(self)) as pool:
            while todo or pool.out:
                while todo and (self.workers is None or len(pool.out) < self.workers):
                    job = todo.pop(0)
                    split_key, view_key = feature_keys(job.cfg)
                    task_ref = pool.put(job.cfg.task, job.task)
                    splits = pool.feature(split_key, _encode_splits, job.cfg, task_ref)
                    views = (
                        pool.feature(view_key, _encode_views, job.cfg, task_ref, n_views[view_key])
                        if n_views[view_key]
                        else ViewFeatures([], job.cfg.augment)
                    )
                    args = (job.identity, job.descriptions, splits, views, pool.kill_marker)
                    pool.submit(job, _train, job.cfg, task_ref, *args)
                job, outcome = pool.next()
                for key in feature_keys(job.cfg):
                    readers[key] -= 1
                    if readers[key] == 0:
                        pool.features.pop(key, None)
                yield job, outcome


class RayTasks:
    """One batch of Ray work of a :class:`RayExecutor`: Ray started (or joined) for it, tasks
    submitted with the executor's resources and their outcomes taken one at a time as they finish,
    objects and feature tasks kept by key so that tasks share them through the object store.
    :meth:`close` (also on Ctrl-C) cancels what is still out and shuts Ray down if it started it.

    A task that raises comes back as a :class:`RunFailure` (not retried); a task whose worker or
    node died is run again by Ray up to ``max_retries`` times, then is a :class:`RunFailure` too."""

    def __init__(self, executor: RayExecutor) -> None:
        self.ray = import_ray()
        self.executor = executor
        self.started = executor._start()
        # a task that raises fails (recorded); only a task whose worker or node died is run again
        self.options: dict[str, Any] = {
            "num_cpus": executor.cpus_per_run,
            "num_gpus": executor.gpus_per_run,
            "max_retries": executor.max_retries,
            "retry_exceptions": False,
        }
        self.kill_marker = os.environ.get(KILL_ONCE_ENV)
        self.out: dict[Any, Any] = {}  # task ref -> what the caller gave with it
        self.features: dict[Any, Any] = {}  # key -> a feature task's ref
        self._objects: dict[Any, Any] = {}  # key -> ray.put ref
        self._remote: dict[Any, Any] = {}
        self.feature_options: dict[str, Any] = dict(self.options)
        if executor.data_resource:  # image-reading tasks only where the datasets are
            have = self.ray.cluster_resources().get(executor.data_resource, 0)
            if have <= 0:
                self.close()
                raise ConfigError(
                    f"no node of the Ray cluster offers the resource {executor.data_resource!r}: start the "
                    f"nodes that hold the datasets with `ray start ... --resources "
                    f"'{{\"{executor.data_resource}\": 1}}'`"
                )
            self.feature_options["resources"] = {executor.data_resource: DATA_RESOURCE_SLIVER}

    def _fn(self, fn: Callable[..., Any], feature: bool = False) -> Any:
        key = (fn, feature)
        if key not in self._remote:
            self._remote[key] = self.ray.remote(fn).options(
                **(self.feature_options if feature else self.options)
            )
        return self._remote[key]

    def put(self, key: Any, obj: Any) -> Any:
        """``obj`` in the object store, once per ``key``."""
        if key not in self._objects:
            self._objects[key] = self.ray.put(obj)
        return self._objects[key]

    def feature(self, key: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """The ref of the task ``fn(*args)`` started once per ``key`` (kept until dropped from
        :attr:`features`)."""
        if key not in self.features:
            self.features[key] = self._fn(fn, feature=True).remote(*args)
        return self.features[key]

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """Start the task ``fn(*args)``; :meth:`next` gives back ``tag`` with its outcome."""
        ref = self._fn(fn).remote(*args)
        self.out[ref] = tag
        return ref

    def capacity(self) -> int:
        """How many tasks the cluster's CPUs and GPUs run at once at the executor's resources per
        task (at least 1)."""
        total = self.ray.cluster_resources()
        fits = [
            int(total.get(name, 0) // per)
            for name, per in (("CPU", self.executor.cpus_per_run), ("GPU", self.executor.gpus_per_run))
            if per > 0
        ]
        return max(1, min(fits, default=1))

    def next(self) -> tuple[Any, Any]:
        """``(tag, outcome)`` of the next task to finish: its return value or a :class:`RunFailure`."""
        ray = self.ray
        ready, _ = ray.wait(list(self.out), num_returns=1)
        tag = self.out.pop(ready[0])
        try:
            outcome = ray.get(ready[0])
        except ray.exceptions.RayTaskError as err:  # the task (or the features it reads) raised
            cause = err.cause if isinstance(err.cause, BaseException) else err
            outcome = RunFailure(cause, _remote_traceback(err))
        except ray.exceptions.RayError as err:  # a worker or node lost past the retries
            outcome = RunFailure(err, f"{type(err).__name__}: {err}")
        return tag, outcome

    def cancel(self, refs: list[Any]) -> None:
        """Cancel these tasks (without force: never kill a process from here); their outcomes are
        forgotten."""
        for ref in refs:
            self.out.pop(ref, None)
            try:
                self.ray.cancel(ref, force=False)
            except Exception:  # noqa: BLE001, S110 - already finished or gone
                pass

    def close(self) -> None:
        """Cancel what is still out (interrupted: nothing of it is used) and stop Ray if started here."""
        self.cancel(list(self.out) + [f for f in self.features.values() if isinstance(f, self.ray.ObjectRef)])
        self.features.clear()
        self._objects.clear()
        if self.started:
            self.started = False
            self.ray.shutdown()


def is_lost_worker(err: BaseException) -> bool:
    """Whether a :class:`RunFailure`'s error is a worker or node lost past the retries (not an
    error the task raised)."""
    ray = import_ray()
    return isinstance(err, ray.exceptions.RayError) and not isinstance(err, ray.exceptions.RayTaskError)
