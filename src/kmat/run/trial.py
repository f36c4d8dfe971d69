"""One hyper-parameter-search trial: train a configuration and score it on one validation split.

A trial is a function of its :class:`RunConfig` alone (the method options under test and the seed):
:func:`score_trial` trains the method on the high-end few-shot images exactly as a run does
(:func:`kmat.run.runner.run`: same seeding, few-shot subset, augmented views and training loop)
and returns the metrics of the final model on the *full* validation split of one modality. It
writes nothing, so a trial can run in this process or, later, as a task on another worker.

``select_on="high"`` (the paper's protocol) reads no low-end image or label: the task is loaded
with the low-end manifest unread (:func:`load_task` with ``read_low=False``), a task passed in is
stripped of its low-end samples, and only the high-end train and val images are hashed, checked
for content leaks and encoded. ``select_on="low"`` scores on the low-end validation split (and
reads no other low-end image), which peeks at the target modality: what it chooses is not a strict
zero-shot result.

An executor that runs trials elsewhere (:mod:`kmat.tools.ray_trials`) computes a trial's inputs
ahead (:class:`TrialInputs`: the task's descriptions, the validation features
(:func:`encode_trial_val`) and the training views (:func:`kmat.run.runner.encode_views`)), shares
them between trials, and hands them to :func:`score_trial`, which then reads no file of the task and
returns the same numbers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from kmat.backbone import Backbone
from kmat.data.fewshot import sample_few_shot
from kmat.data.fingerprint import check_content_leaks
from kmat.data.task import Task, load_task, resolve_task
from kmat.errors import ConfigError, TaskError
from kmat.features import FeatureStore, TrainFeatures, encode_samples
from kmat.run.config import RunConfig
from kmat.run.device import resolve_device
from kmat.run.runner import (
    ViewFeatures,
    _backbone_for,
    _encode_batch,
    _val_metrics,
    build_method,
    few_shot_val,
    few_shot_val_samples,
    fit_and_train,
    resolve_method_config,
    seed_everything,
)

SELECT_ROLES = ("high", "low")


def trial_task(task: str | Task, select_on: str, data_root: str | None = None) -> Task:
    """The task a trial may see: for ``select_on="high"`` without any low-end sample (a folder or
    name is loaded without reading the low-end manifest). Its ``select_on`` modality must have a
    validation split (:class:`TaskError` otherwise)."""
    if select_on not in SELECT_ROLES:
        raise ConfigError(f"select_on must be one of {list(SELECT_ROLES)}, got {select_on!r}")
    if isinstance(task, str):
        task = load_task(resolve_task(task, data_root), read_low=select_on == "low")
    elif select_on == "high" and task.low.samples:
        task = dataclasses.replace(task, low=dataclasses.replace(task.low, samples=[]))
    mod = task.modality(select_on)
    if not mod.split("val"):
        raise TaskError(
            f"{mod.manifest}: no validation split ({select_on}-end, {mod.name}): a trial is scored "
            f"on the {select_on}-end validation images (rows with split=val)"
        )
    return task


@dataclasses.dataclass
class TrialInputs:
    """What a trial reads from its task's files, read ahead elsewhere: the task's descriptions
    (``None``: read them if the method needs them), the validation features and labels per role
    (:func:`encode_trial_val`), and the training views (:func:`kmat.run.runner.encode_views`: as
    many as the trial's epochs need)."""

    descriptions: dict[str, dict[str, list[str]]] | None
    val: dict[str, tuple[torch.Tensor, torch.Tensor]]
    views: ViewFeatures


def encode_trial_val(
    cfg: RunConfig,
    task: Task,
    select_on: str = "high",
    backbone: Backbone | None = None,
    store: FeatureStore | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The validation features and labels a trial of ``cfg`` reads (``task``: :func:`trial_task`'s),
    per role: the ``select_on``-end split it is scored on, and the high-end one that a method's
    ``fit`` gets, as in a run (when the task has one; with ``select_on="high"`` the same)."""
    backbone = _backbone_for(cfg, backbone)
    store = store if store is not None else FeatureStore(disk=cfg.feature_cache)
    roles = [select_on] + (["high"] if select_on != "high" and task.high.split("val") else [])
    return {
        role: encode_samples(
            backbone,
            task.modality(role).split("val"),
            batch_size=_encode_batch(cfg, backbone),
            desc=f"{role}-end val images",
            show_progress=cfg.show_progress,
            store=store,
        )
        for role in roles
    }


def score_trial(
    cfg: RunConfig,
    select_on: str = "high",
    backbone: Backbone | None = None,
    store: FeatureStore | None = None,
    task: Task | None = None,
    inputs: TrialInputs | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` (``cfg.out`` is not used) and score it on the ``select_on``-end validation split.

    Returns ``{"objective": acc (%), "val": {"acc", "macro_f1", "n"}, "final_loss", "timing"}``;
    ``backbone``, ``store`` and ``task`` let trials share them. A diverged training is a
    :class:`kmat.errors.TrainingDivergedError`, as in a run. With ``inputs`` (computed ahead, the
    task's content checked by whoever computed them) the trial reads no file of the task.
    """
    t_start = time.perf_counter()
    seed_everything(cfg.seed, resolve_device(cfg.device))
    task = trial_task(task if task is not None else cfg.task, select_on, cfg.data_root)
    backbone = _backbone_for(cfg, backbone)
    if store is None:
        store = FeatureStore(disk=cfg.feature_cache)
    if inputs is None:
        check_content_leaks(task)  # the high-end data it trains on
    method = build_method(
        cfg, task, backbone, resolve_method_config(cfg, task), inputs.descriptions if inputs else None
    )
    shots = sample_few_shot(task, task.high, "train", cfg.shots, cfg.seed)
    val = inputs.val if inputs else encode_trial_val(cfg, task, select_on, backbone, store)
    t0 = time.perf_counter()
    feats: Callable[[int], tuple[torch.Tensor, torch.Tensor]] = (
        inputs.views
        if inputs
        else TrainFeatures(
            backbone,
            shots,
            seed=cfg.seed,
            augment=cfg.augment,
            batch_size=_encode_batch(cfg, backbone),
            show_progress=cfg.show_progress,
            store=store,
        )
    )
    fit_val = few_shot_val(task, few_shot_val_samples(cfg, task), val)  # as a run's hooks see it
    history, _ = fit_and_train(cfg, method, feats, fit_val)  # exactly as a run trains
    train_s = time.perf_counter() - t0
    metrics = _val_metrics(method, {select_on: val[select_on]}, task)[select_on]
    return {
        "objective": metrics["acc"],
        "val": metrics,
        "final_loss": history[-1].get("total") if history else None,
        "timing": {"train_s": train_s, "total_s": time.perf_counter() - t_start},
    }


@dataclasses.dataclass
class TrialFailure:
    """A trial's run that failed: the error, its traceback text, and whether it stops the tune
    (``fatal``: a bug; a kmat error, e.g. a diverged training, or a worker lost past its retries
    fails only its trial and the search goes on)."""

    error: BaseException
    traceback: str
    fatal: bool


class TrialRunner(Protocol):
    """Where trials' runs are computed. ``submit`` hands out the run of trial ``number`` at
    ``seed``; ``next`` gives ``(number, seed, score | TrialFailure)`` of the next run to finish
    (``score``: :func:`kmat.run.trial.score_trial`'s answer); ``drop`` forgets (cancels) the runs of
    a trial still out; ``slots``: how many trials are in flight at most."""

    slots: int

    def submit(self, number: int, params: dict[str, Any], seed: int) -> None: ...

    def next(self) -> tuple[int, int, dict[str, Any] | TrialFailure]: ...

    def drop(self, number: int) -> None: ...

    def close(self) -> None: ...
