"""Where a grid's runs are computed: in this process, one after another (:class:`LocalExecutor`, the
default), or elsewhere by an executor that computes runs and hands their outputs back (a
:class:`RemoteExecutor`, e.g. :class:`kmat.tools.ray_executor.RayExecutor` on a Ray cluster).

Whatever the executor, the grid driver (:func:`kmat.run.grid.run_grid`) decides which runs are done,
holds each run's lock, and writes every run folder itself with :func:`kmat.run.runner.write_run`:
the same code that writes a run computed in this process, so the folders, ``result.json`` and the
tables are the same. An executor only computes (:func:`kmat.run.runner.compute_run`) and never
writes into the output folder (which therefore needs not be shared with the machines that compute).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kmat.data.task import Task
from kmat.run.config import RunConfig
from kmat.run.runner import RunOutput


@dataclass
class RunJob:
    """One run handed to an executor: its grid position and name, configuration and loaded task,
    and what the driver read of the task for it (its identity, the task's descriptions), so that an
    executor's training step need not read the task's files."""

    index: int
    name: str
    cfg: RunConfig
    task: Task
    identity: dict[str, Any] = field(default_factory=dict)
    descriptions: dict[str, dict[str, list[str]]] | None = None


@dataclass
class RunFailure:
    """A run the executor could not compute: the error (as raised where it ran, when it could be
    brought back) and the traceback text from where it ran."""

    error: BaseException
    traceback: str


class LocalExecutor:
    """Today's behaviour: every run computed and written in this process, one after another."""

    name = "local"


@runtime_checkable
class RemoteExecutor(Protocol):
    """Computes runs elsewhere and yields each one's output (or failure) as it finishes.

    ``results`` yields ``(job, RunOutput | RunFailure)`` once per job, in the order they finish;
    closing the iterator early (the driver was interrupted) cancels the jobs not yet finished.
    A job whose worker died is retried by the executor (a bounded number of times) before it is a
    failure. ``workers``: how many runs are in flight at most (``None``: as many as the resources
    allow)."""

    name: str

    def results(self, jobs: list[RunJob]) -> Generator[tuple[RunJob, RunOutput | RunFailure], None, None]: ...
