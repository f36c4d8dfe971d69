"""``kmat tune --executor ray``: every run of a trial (one per tuning seed) a Ray task.

The driver (:func:`kmat.tools.tune.search`) asks Optuna for trials and tells it their objectives;
this module only computes. Features are computed once and shared through Ray's object store, as a
grid's (:mod:`kmat.tools.ray_executor`): one task encodes the scored validation split, one per seed
the training views (as many as the longest trial so far needs: a searched ``epochs`` gets a larger
set when a trial asks for more), and every trial's runs read them (and the task's descriptions,
read by the driver) instead of any file of the task. A worker keeps its backbone between tasks.

A run that raises a kmat error fails its trial (the search goes on); a worker or node that dies
takes its run with it and Ray runs it again (``--max-retries``), past which the trial fails too; any
other error stops the tune, as it does in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kmat.data.fingerprint import check_content_leaks
from kmat.data.task import Task
from kmat.errors import KmatError
from kmat.run.config import RunConfig
from kmat.run.executor import RunFailure
from kmat.run.runner import ViewFeatures, feature_keys, read_descriptions, views_needed
from kmat.run.trial import TrialFailure, TrialInputs, encode_trial_val, score_trial
from kmat.tools.ray_executor import (
    RayExecutor,
    RayTasks,
    _encode_views,
    _worker_backbone_and_store,
    is_lost_worker,
    maybe_die,
)


def _encode_val(cfg: Any, task: Task, select_on: str) -> Any:
    """A feature task: the ``select_on``-end validation features every trial is scored on."""
    backbone, store = _worker_backbone_and_store(cfg)
    return encode_trial_val(cfg, task, select_on, backbone, store)


def _score(
    cfg: Any,
    task: Task,
    select_on: str,
    descriptions: Any,
    val: Any,
    views: ViewFeatures,
    kill_marker: str | None,
) -> dict[str, Any]:
    """A trial's run at one seed: train on the views given, score on the validation features given."""
    maybe_die(kill_marker)
    backbone, store = _worker_backbone_and_store(cfg)
    inputs = TrialInputs(descriptions=descriptions, val=val, views=views)
    return score_trial(cfg, select_on, backbone=backbone, store=store, task=task, inputs=inputs)


class RayTrialRunner:
    """The trials' runs of one tune as Ray tasks (:class:`kmat.run.trial.TrialRunner`).

    ``config(params, seed)``: the run config of a trial's run; ``task``: the task as a trial may
    see it (:func:`kmat.run.trial.trial_task`: no low-end sample when ``select_on`` is ``"high"``),
    checked and described here once; ``seeds``: the runs per trial. ``slots``: the executor's
    ``workers`` (trials in flight), else as many trials as the cluster runs at once with all their
    seeds' runs together (at least 1)."""

    def __init__(
        self,
        executor: RayExecutor,
        config: Callable[[dict[str, Any], int], RunConfig],
        task: Task,
        select_on: str,
        seeds: int,
    ) -> None:
        self.config = config
        self.task = task
        self.role = select_on
        check_content_leaks(task)  # what a trial checks in this process, once here
        self.descriptions = read_descriptions(config({}, 0), task)
        self.pool = RayTasks(executor)
        self.slots = executor.workers or max(1, self.pool.capacity() // seeds)
        self.views: dict[tuple, tuple[int, Any]] = {}  # view key -> (views computed, their ref)

    def submit(self, number: int, params: dict[str, Any], seed: int) -> None:
        cfg = self.config(params, seed)
        pool = self.pool
        task_ref = pool.put("task", self.task)
        split_key, view_key = feature_keys(cfg)
        val = pool.feature(("val", split_key), _encode_val, cfg, task_ref, self.role)
        n = views_needed(cfg, self.task)
        have, ref = self.views.get(view_key, (0, None))
        if n > have:  # the first trial at this seed, or one that trains longer than any before
            ref = pool.feature(("views", view_key, n), _encode_views, cfg, task_ref, n)
            self.views[view_key] = (n, ref)
        views = ref if n else ViewFeatures([], cfg.augment)
        pool.submit(
            (number, seed),
            _score,
            cfg,
            task_ref,
            self.role,
            self.descriptions,
            val,
            views,
            pool.kill_marker,
        )

    def next(self) -> tuple[int, int, dict[str, Any] | TrialFailure]:
        (number, seed), outcome = self.pool.next()
        if isinstance(outcome, RunFailure):
            err = outcome.error
            fatal = not isinstance(err, KmatError) and not is_lost_worker(err)
            return number, seed, TrialFailure(err, outcome.traceback, fatal)
        return number, seed, outcome

    def drop(self, number: int) -> None:
        self.pool.cancel([ref for ref, tag in self.pool.out.items() if tag[0] == number])

    def close(self) -> None:
        self.pool.close()
