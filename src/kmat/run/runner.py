"""One run end to end: task -> few-shot subset -> frozen features -> method -> engine -> result.json."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import random
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kmat import __version__
from kmat.backbone import Backbone, load_backbone, load_recorded_backbone
from kmat.data.fewshot import sample_few_shot, write_subset
from kmat.data.fingerprint import check_content_leaks, data_fingerprint
from kmat.data.images import check_readable
from kmat.data.task import Sample, Task, load_task, resolve_task
from kmat.engine import load_checkpoint, train
from kmat.errors import (
    BackboneError,
    CheckpointError,
    ConfigError,
    KmatError,
    OutputError,
    RunConflictError,
    TaskError,
    TrainingDivergedError,
)
from kmat.features import FeatureStore, TrainFeatures, encode_samples
from kmat.knowledge.descriptions import descriptions_source, load_descriptions, template_descriptions
from kmat.methods import get_method
from kmat.methods.base import Method, MethodContext
from kmat.methods.config import MethodConfig, resolve_config
from kmat.metrics import classification_metrics, cross_modal_summary
from kmat.run.artifacts import load_head
from kmat.run.config import RunConfig
from kmat.run.device import encode_batch_size, resolve_device
from kmat.run.layout import RunLayout
from kmat.run.lock import run_lock
from kmat.run.runlog import RunLog, capture_run_log, duration_text, history_csv_bytes
from kmat.run.schema import (
    CONFIG_KEYS,
    INPUT_KEYS,
    SCHEMA_VERSION,
    differences,
    identity,
    identity_of,
    read_result,
)
from kmat.utils.cache import file_sha256
from kmat.utils.io import atomic_save_safetensors, atomic_write_bytes, atomic_write_json, output_errors
from kmat.utils.provenance import source_commit

log = logging.getLogger(__name__)


def save_embeddings(method: Method, path: Path) -> None:
    """The final class embeddings per modality role (for figures), written atomically."""
    atomic_save_safetensors(
        path, {role: t.detach().float().cpu().clone() for role, t in method.class_embeddings().items()}
    )


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed Python, NumPy and torch; on CUDA also ask for deterministic kernels.

    CUDA: cuDNN autotuning off, deterministic algorithms where torch has them (a warning, not an
    error, where it has none) and cuBLAS's fixed workspace (read when its handle is created).
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if device is not None and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def versions() -> dict[str, str]:
    """The versions of kmat and the libraries a run's numbers depend on; ``kmat_git``: the commit
    of kmat's source when it runs from a git checkout (``-dirty``: with uncommitted changes)."""
    import open_clip
    import ot
    import transformers

    commit = source_commit()
    return {
        "kmat": __version__,
        **({"kmat_git": commit} if commit else {}),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "transformers": transformers.__version__,
        "pot": ot.__version__,
    }


def resolve_method_config(cfg: RunConfig, task: Task) -> MethodConfig:
    """The method's config for this run: its defaults, its published per-task values, then ``cfg.options``."""
    cls = get_method(cfg.method)
    published = cls.task_defaults.get(task.high.dataset)
    return resolve_config(cls.Config, {**(published.values if published else {}), **cfg.options})


def published_defaults_record(cfg: RunConfig, task: Task) -> dict[str, Any] | None:
    """What ``result.json`` records of the published per-dataset defaults that applied (or None)."""
    published = get_method(cfg.method).task_defaults.get(task.high.dataset)
    if published is None:
        return None
    overridden = sorted(k for k in published.values if k in cfg.options)
    return {"values": published.values, "source": published.source, "overridden_by_user": overridden}


def task_fingerprint(task: Task) -> str:
    """The task's data fingerprint (:func:`kmat.data.fingerprint.data_fingerprint`) combined with the
    bytes of the descriptions file its runs read (when there is one)."""
    h = hashlib.sha256(data_fingerprint(task).encode())
    source = descriptions_source(task)
    if source is not None and Path(source).is_file():
        h.update(file_sha256(source).encode())
    return h.hexdigest()[:16]


def weights_digest(backbone: Backbone) -> str:
    """The sha256 prefix of a backbone's weights (the part of its identity after ``@``)."""
    return backbone.identity().rpartition("@")[2]


def run_identity(
    cfg: RunConfig, task: Task, method_config: MethodConfig, backbone: Backbone | None = None
) -> dict[str, Any]:
    """What a finished run of ``cfg`` records as its identity (see :mod:`kmat.run.schema`); without
    ``backbone`` its weights are left out (``None``)."""
    return identity(
        method=cfg.method,
        task=task.name,
        shots=cfg.shots,
        seed=cfg.seed,
        backbone=cfg.backbone,
        precision=cfg.precision,
        augment=cfg.augment,
        method_config=method_config.to_dict(),
        backbone_weights=None if backbone is None else weights_digest(backbone),
        task_data=task_fingerprint(task),
    )


def config_differences(existing: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """How a finished run's configuration differs from ``expected`` (:func:`differences` over the
    configuration keys). The backbone is the same backbone when both record the same weights,
    whatever its spec says (an alias such as ``demo``, or a model folder that moved)."""
    weights = existing.get("backbone_weights")
    same_weights = weights is not None and weights == expected.get("backbone_weights")
    keys = tuple(k for k in CONFIG_KEYS if not (same_weights and k == "backbone"))
    return differences(existing, expected, keys)


def stale_inputs(existing: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What changed in a finished run's inputs (backbone weights, task data) against ``expected``;
    an input the result does not record (older kmat) counts as changed. Keys that ``expected``
    leaves at ``None`` (not known to the caller) are not compared."""
    out = []
    for key in INPUT_KEYS:
        want, have = expected.get(key), existing.get(key)
        if want is None or have == want:
            continue
        if have is None:
            out.append(f"{key}: not recorded by the kmat that made the run")
        else:
            out.append(f"{key} changed ({have!r} -> {want!r})")
    return out


def existing_identity(folder: str | Path) -> dict[str, Any] | None:
    """The identity of the finished run in ``folder``; None when there is none or it is unreadable
    (an unreadable result is no run to protect, nor a finished one)."""
    layout = RunLayout.of(folder)
    if not layout.exists():
        return None
    try:
        return identity_of(read_result(layout.result))
    except CheckpointError:
        return None


def check_run_folder(folder: str | Path, expected: dict[str, Any], overwrite: bool = False) -> None:
    """Refuse to replace a finished run made with another configuration (unless ``overwrite``); a
    run of the same configuration whose inputs have changed since (stale) is replaced, with a
    warning that says why."""
    existing = None if overwrite else existing_identity(folder)
    if existing is None:
        return
    layout = RunLayout.of(folder)
    diff = config_differences(existing, expected)
    if not diff:
        stale = stale_inputs(existing, expected)
        if stale:
            log.info("%s: replacing a stale run: %s", layout.folder, "; ".join(stale))
        return
    shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
    raise RunConflictError(
        f"{layout.folder} holds a run with another configuration ({shown}); "
        "choose another output folder, or allow overwriting it"
    )


def build_method(
    cfg: RunConfig,
    task: Task,
    backbone: Backbone,
    method_config: MethodConfig | None = None,
    descriptions: dict[str, dict[str, list[str]]] | None = None,
) -> Method:
    """The run's method, initialised for its seed. ``descriptions``: the task's descriptions as
    :func:`kmat.knowledge.descriptions.load_descriptions` reads them, read elsewhere (a Ray task)."""
    cls = get_method(cfg.method)
    mcfg = method_config if method_config is not None else resolve_method_config(cfg, task)
    ctx = MethodContext(backbone=backbone, task=task, min_descriptions=cfg.min_descriptions)
    if descriptions is not None:
        ctx._cache["descriptions"] = descriptions
    torch.manual_seed(cfg.seed)  # prompt initialisation depends on the seed only
    return cls(ctx, mcfg)


@torch.no_grad()
def evaluate(method: Method, test: dict[str, tuple[torch.Tensor, torch.Tensor]], task: Task) -> dict:
    """Metrics on the high-end test split (high-end prompts) and the low-end one (low-end prompts)."""
    per_role = {}
    for role, (feats, labels) in test.items():
        logits = method.predict_logits(feats, role)
        per_role[role] = classification_metrics(
            labels.numpy(), logits.argmax(dim=1).numpy(), task.num_classes
        )
    return per_role


def _result(
    cfg: RunConfig,
    task: Task,
    backbone: Backbone,
    method: Method,
    per_role: dict,
    timing: dict,
    history: list[dict],
) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "method": cfg.method,
        "task": task.name,
        "shots": cfg.shots,
        "seed": cfg.seed,
        "backbone": backbone.name,
        "config": {
            **_checkpoint_config(cfg, method),
            "task_folder": str(task.folder),
            "classes": task.classes,
            "classnames": task.classnames,  # as written in the prompts (deployment re-builds them)
            "modalities": {"high": task.high.name, "low": task.low.name},
            "modality_display_names": {"high": task.high.display_name, "low": task.low.display_name},
            "published_defaults": published_defaults_record(cfg, task),
            "descriptions_template": template_descriptions(task),
        },
        "metrics": cross_modal_summary(per_role["high"], per_role["low"]),
        "per_class": {
            role: dict(zip(task.classes, m["per_class_acc"], strict=True)) for role, m in per_role.items()
        },
        "confusion": {role: m["confusion"] for role, m in per_role.items()},
        "n_test": {role: m["n"] for role, m in per_role.items()},
        "val": {},  # the final model on the full validation splits (model selection; not a test result)
        "history": history,
        "timing": timing,
        "versions": versions(),
        "device_used": device_used(backbone.device),
    }


def device_used(device: torch.device) -> str:
    """The device a run computed on, as recorded (``cpu``, ``cuda:0 (NVIDIA H200)``, ``mps``)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def _backbone_for(cfg: RunConfig, backbone: Backbone | None) -> Backbone:
    """The run's backbone (loaded, or the given one moved) on its device and precision."""
    device = resolve_device(cfg.device)
    backbone = load_backbone(cfg.backbone, device=device) if backbone is None else backbone.to(device)
    return backbone.set_precision(cfg.precision)


def _encode_batch(cfg: RunConfig, backbone: Backbone) -> int:
    return cfg.feature_batch_size or encode_batch_size(backbone.device)


def _test_features(
    cfg: RunConfig, task: Task, backbone: Backbone, store: FeatureStore, split: str = "test"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Features and labels of a split of both modalities (high-end and low-end); a modality without
    images in ``split`` is left out (only possible for ``val``: task loading requires test images)."""
    return {
        role: encode_samples(
            backbone,
            task.modality(role).split(split),
            batch_size=_encode_batch(cfg, backbone),
            desc=f"{role}-end {split} images",
            show_progress=cfg.show_progress,
            store=store,
        )
        for role in ("high", "low")
        if task.modality(role).split(split)
    }


def _val_metrics(method: Method, val: dict[str, tuple[torch.Tensor, torch.Tensor]], task: Task) -> dict:
    """``{"high": {"acc", "macro_f1", "n"}, "low": {...}}`` of the full validation splits (where present)."""
    return {
        role: {k: m[k] for k in ("acc", "macro_f1", "n")} for role, m in evaluate(method, val, task).items()
    }


def _val_per_epoch(
    method: Method, val: dict[str, tuple[torch.Tensor, torch.Tensor]], task: Task
) -> Callable[[int], dict[str, float]] | None:
    """The high-end validation accuracy and macro-F1 (%) of the model at the end of each epoch,
    for the run's history (model selection; the reported model stays the last epoch's, as in the
    paper). ``None`` without high-end validation images."""
    if "high" not in val:
        return None
    high = {"high": val["high"]}

    def score(epoch: int) -> dict[str, float]:  # noqa: ARG001 - the engine passes the epoch
        m = evaluate(method, high, task)["high"]
        return {"val_high_acc": float(m["acc"]), "val_high_macro_f1": float(m["macro_f1"])}

    return score


def run(
    cfg: RunConfig,
    backbone: Backbone | None = None,
    store: FeatureStore | None = None,
    task: Task | None = None,
    overwrite: bool = False,
    locked: bool = False,
    annotations: dict[str, Any] | None = None,
) -> dict:
    """Train and evaluate one (method, task, shots, seed); writes ``<out>/result.json`` and returns it.

    ``backbone``, ``store`` and ``task`` (``cfg.task`` already loaded) let a grid share them between runs.
    A finished run of another configuration in ``cfg.out`` is a :class:`RunConflictError` unless
    ``overwrite``. The run holds ``cfg.out``'s lock (:mod:`kmat.run.lock`) while it works, unless the
    caller holds it already (``locked``); another process holding it is a :class:`RunBusyError`.
    ``annotations`` are top-level keys added to ``result.json`` (e.g. ``protocol`` and ``tuning`` of
    a run that ``kmat tune`` chose); they are not part of the run's identity.
    """
    cfg.validate()
    if locked:
        return _run(cfg, backbone, store, task, overwrite, annotations)
    with run_lock(cfg.out):
        return _run(cfg, backbone, store, task, overwrite, annotations)


@dataclasses.dataclass
class RunOutput:
    """What one run computes, in memory: everything :func:`write_run` writes into its folder.

    Made by :func:`compute_run` (in this process, or on another machine by an executor) and written
    by the process that owns the output folder; the bytes written are the same either way."""

    result: dict[str, Any]
    replay: dict[str, Any]  # the run config file (config.json)
    state: dict[str, torch.Tensor]  # the learnable parameters (checkpoint.safetensors)
    checkpoint_metadata: dict[str, str]
    embeddings: dict[str, torch.Tensor]  # per modality role (class_embeddings.safetensors)
    classes: list[str]
    shots: list[Sample]  # the few-shot subsets (fewshot_train.csv, fewshot_val.csv)
    val: list[Sample] | None
    identity: dict[str, Any]  # the run's identity (:func:`run_identity`): checked against the folder
    head: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # head.safetensors (Method.head)
    log: str = ""  # what was said while the run computed (log.txt; :mod:`kmat.run.runlog`)


@dataclasses.dataclass
class SplitFeatures:
    """The test and validation features of a task's two modalities: role -> (features, labels); a
    role without images in a split is left out."""

    test: dict[str, tuple[torch.Tensor, torch.Tensor]]
    val: dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass
class ViewFeatures:
    """The training features of a few-shot subset, one view per epoch (a single plain view without
    augmentation): what :class:`kmat.features.TrainFeatures` gives, computed ahead."""

    views: list[tuple[torch.Tensor, torch.Tensor]]
    augment: bool

    def __call__(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = epoch if self.augment else 0
        if i >= len(self.views):
            raise ConfigError(f"training view {epoch} was not computed ({len(self.views)} view(s) given)")
        return self.views[i]


@dataclasses.dataclass
class RunInputs:
    """What a run reads from its task's files and its backbone, read ahead elsewhere, so that the
    run itself reads no file of the task: the run's identity (data fingerprint, weights digest), the
    task's descriptions (``None``: read them if the method needs them), and the image features."""

    identity: dict[str, Any]
    descriptions: dict[str, dict[str, list[str]]] | None
    splits: SplitFeatures
    views: ViewFeatures


def read_descriptions(cfg: RunConfig, task: Task) -> dict[str, dict[str, list[str]]] | None:
    """The task's descriptions as the run's method would read them; ``None`` when they cannot be
    read (a method that needs them then reads them itself and reports why)."""
    try:
        return load_descriptions(task, cfg.min_descriptions)
    except KmatError:
        return None


def feature_keys(cfg: RunConfig) -> tuple[tuple, tuple]:
    """Which runs share features: the same test/validation features (task, backbone, precision,
    device, batch size), and also the same training views (and shots, seed, augmentation)."""
    split = (cfg.task, cfg.data_root, cfg.backbone, cfg.precision, cfg.device, cfg.feature_batch_size)
    return split, (*split, cfg.shots, cfg.seed, cfg.augment)


def views_needed(cfg: RunConfig, task: Task) -> int:
    """How many training views ``cfg``'s run reads (:meth:`kmat.methods.base.Method.views_needed`):
    one per epoch (one in all without augmentation); none for a method that neither trains nor fits."""
    return get_method(cfg.method).views_needed(resolve_method_config(cfg, task), cfg.augment)


def encode_splits(
    cfg: RunConfig, task: Task, backbone: Backbone | None = None, store: FeatureStore | None = None
) -> SplitFeatures:
    """The test and validation features ``cfg``'s run reads (as :func:`compute_run` computes them)."""
    backbone = _backbone_for(cfg, backbone)
    store = store if store is not None else FeatureStore(disk=cfg.feature_cache)
    return SplitFeatures(
        test=_test_features(cfg, task, backbone, store), val=_test_features(cfg, task, backbone, store, "val")
    )


def encode_views(
    cfg: RunConfig,
    task: Task,
    n_views: int,
    backbone: Backbone | None = None,
    store: FeatureStore | None = None,
) -> ViewFeatures:
    """The first ``n_views`` training views of ``cfg``'s few-shot subset (as :func:`compute_run`
    computes them)."""
    backbone = _backbone_for(cfg, backbone)
    shots = sample_few_shot(task, task.high, "train", cfg.shots, cfg.seed)
    feats = TrainFeatures(
        backbone,
        shots,
        seed=cfg.seed,
        augment=cfg.augment,
        batch_size=_encode_batch(cfg, backbone),
        show_progress=cfg.show_progress,
        store=store if store is not None else FeatureStore(disk=cfg.feature_cache),
    )
    return ViewFeatures([feats(e) for e in range(n_views)], cfg.augment)


def compute_run(
    cfg: RunConfig,
    backbone: Backbone | None = None,
    store: FeatureStore | None = None,
    task: Task | None = None,
    on_identity: Callable[[dict[str, Any]], None] | None = None,
    before_training: Callable[[list[Sample], list[Sample] | None], None] | None = None,
    inputs: RunInputs | None = None,
) -> RunOutput:
    """Train and evaluate one run without writing its folder (the compute half of :func:`run`).

    ``on_identity(expected)`` is called once the run's identity is known (before any image is
    encoded), ``before_training(shots, val)`` once the test features are read, before training:
    :func:`run` checks and prepares its folder there, so that a bad folder fails early.

    ``inputs``: the run's identity, descriptions and features, computed ahead elsewhere (the task's
    content checks too): the run then reads no file of the task. The backbone's weights must be those
    of ``inputs.identity``.

    The run's log (kmat's log records and the warnings raised meanwhile, between a start line with
    its settings and an end line with its timing) is captured here and returned in ``log``."""
    with capture_run_log() as run_log:
        run_log.add(start_line(cfg))
        output = _compute_run(cfg, backbone, store, task, on_identity, before_training, inputs, run_log)
        for line in end_lines(output.result):
            run_log.add(line)
    output.log = run_log.text()
    return output


def start_line(cfg: RunConfig) -> str:
    """The first line of a run's log: what is run, where, with which options given."""
    options = json.dumps(cfg.options, sort_keys=True, default=str) if cfg.options else "none"
    return (
        f"kmat {__version__}: run {cfg.method} on task {cfg.task} ({cfg.shots} shots, seed {cfg.seed}); "
        f"backbone {cfg.backbone}, device {cfg.device}, precision {cfg.precision}, "
        f"augment {'on' if cfg.augment else 'off'}; options given: {options}; out {cfg.out}"
    )


def method_config_line(method_config: MethodConfig) -> str:
    """The log line with the method's resolved configuration (defaults, published values, options)."""
    return f"method config: {json.dumps(method_config.to_dict(), sort_keys=True, default=str)}"


def end_lines(result: dict[str, Any]) -> list[str]:
    """The last lines of a run's log: its timing and metrics (and a note on template descriptions)."""
    t = result["timing"]
    parts = ", ".join(f"{k.removesuffix('_s')} {duration_text(v)}" for k, v in t.items() if k != "total_s")
    m = result["metrics"]
    scores = "; ".join(
        f"{label} acc {m[role]['acc']:.2f} macro-F1 {m[role]['macro_f1']:.2f}"
        for role, label in (("high", "Hi"), ("low", "Lo"), ("h", "H"))
    )
    lines = []
    if result["config"].get("descriptions_template"):
        lines.append("descriptions: template-only (they describe no image); the result is marked so")
    lines.append(f"finished in {duration_text(t['total_s'])} ({parts}); test {scores}")
    return lines


def _compute_run(
    cfg: RunConfig,
    backbone: Backbone | None,
    store: FeatureStore | None,
    task: Task | None,
    on_identity: Callable[[dict[str, Any]], None] | None,
    before_training: Callable[[list[Sample], list[Sample] | None], None] | None,
    inputs: RunInputs | None,
    run_log: RunLog,
) -> RunOutput:
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    seed_everything(cfg.seed, resolve_device(cfg.device))
    if task is None:
        task = load_task(resolve_task(cfg.task, cfg.data_root))
    backbone = _backbone_for(cfg, backbone)
    if store is None:
        store = FeatureStore(disk=cfg.feature_cache)
    timing["load_s"] = time.perf_counter() - t_start

    method_config = resolve_method_config(cfg, task)
    run_log.add(method_config_line(method_config))
    if inputs is None:
        check_content_leaks(task)
        expected = run_identity(cfg, task, method_config, backbone)
    else:
        expected = inputs.identity
        if expected.get("backbone_weights") not in (None, weights_digest(backbone)):
            raise BackboneError(
                f"backbone {cfg.backbone} here has weights {weights_digest(backbone)}, the run was "
                f"planned with weights {expected['backbone_weights']}: every machine needs the same backbone"
            )
    if on_identity is not None:
        on_identity(expected)
    t0 = time.perf_counter()
    method = build_method(cfg, task, backbone, method_config, inputs.descriptions if inputs else None)
    shots = sample_few_shot(task, task.high, "train", cfg.shots, cfg.seed)
    val = few_shot_val_samples(cfg, task)
    timing["setup_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()  # test features first: an unreadable test image fails before training
    if inputs is None:
        check_readable([s.path for s in shots])  # and so does an unreadable training image
        test = _test_features(cfg, task, backbone, store)
        val_feats = _test_features(cfg, task, backbone, store, split="val")
    else:
        test, val_feats = inputs.splits.test, inputs.splits.val
    timing["test_features_s"] = time.perf_counter() - t0
    if before_training is not None:
        before_training(shots, val)

    t0 = time.perf_counter()
    feats: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    if inputs is None:
        feats = TrainFeatures(
            backbone,
            shots,
            seed=cfg.seed,
            augment=cfg.augment,
            batch_size=_encode_batch(cfg, backbone),
            show_progress=cfg.show_progress,
            store=store,
        )
    else:
        feats = inputs.views
    history, fit_info = fit_and_train(
        cfg,
        method,
        feats,
        few_shot_val(task, val, val_feats),
        on_epoch_end=_val_per_epoch(method, val_feats, task),
    )
    timing["train_s"] = time.perf_counter() - t0
    state = {k: v.detach().cpu().contiguous() for k, v in method.learnable_state().items()}
    metadata = {"config": json.dumps(_checkpoint_config(cfg, method)), "method": method.name}

    t0 = time.perf_counter()
    per_role = evaluate(method, test, task)
    embeddings = {role: t.detach().float().cpu().clone() for role, t in method.class_embeddings().items()}
    head = {k: v.detach().cpu().contiguous().clone() for k, v in method.head().items()}
    timing["eval_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - t_start
    result = _result(cfg, task, backbone, method, per_role, timing, history)
    result["config"]["task_data"] = expected["task_data"]
    result["val"] = _val_metrics(method, val_feats, task)
    if fit_info:
        result["fit"] = fit_info
    return RunOutput(
        result=result,
        replay=replay_config(cfg, method.cfg),
        state=state,
        checkpoint_metadata=metadata,
        embeddings=embeddings,
        classes=list(task.classes),
        shots=shots,
        val=val,
        identity=expected,
        head=head,
    )


def few_shot_val_samples(cfg: RunConfig, task: Task) -> list[Sample] | None:
    """The run's few-shot validation subset: min(K, 4) images per class of the high-end validation
    split (docs/methods.md, "Few-shot sampling"; written as ``fewshot_val.csv``); ``None`` when the
    task has no high-end validation split."""
    if not task.high.split("val"):
        return None
    return sample_few_shot(task, task.high, "val", min(cfg.shots, 4) if cfg.shots else 0, cfg.seed)


def few_shot_val(
    task: Task, val: list[Sample] | None, split: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Features and labels of the few-shot validation subset ``val`` (rows of the high-end
    validation split's features ``split["high"]``): what a method's ``fit`` and ``after_training``
    select hyper-parameters on (the full split only scores the history, which selects nothing).
    ``None`` without a subset."""
    if not val or "high" not in split:
        return None
    index = {s.path: i for i, s in enumerate(task.high.split("val"))}
    rows = torch.tensor([index[s.path] for s in val], dtype=torch.long)
    feats, labels = split["high"]
    return feats[rows], labels[rows]


def fit_and_train(
    cfg: RunConfig,
    method: Method,
    feats: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    val_high: tuple[torch.Tensor, torch.Tensor] | None,
    on_epoch_end: Callable[[int], dict[str, float]] | None = None,
) -> tuple[list[dict], dict[str, Any]]:
    """The training of a run and of a tuning trial, one code path: the method's ``fit`` hook, the
    one loop, its ``after_training`` hook, then the finiteness check. Returns ``(history, fit)``
    (``fit``: what the hooks recorded)."""
    fit_info = method.fit(feats, val_high)
    history = train(
        method, feats, method.cfg, seed=cfg.seed, show_progress=cfg.show_progress, on_epoch_end=on_epoch_end
    )
    fit_info = {**fit_info, **method.after_training(val_high)}
    check_finite(method)
    return history, fit_info


def _open_run_folder(final: RunLayout) -> RunLayout:
    """Recover ``final`` from an interrupted swap, refuse a folder of foreign files, and create the
    staging folder the run is built in (returned)."""
    with output_errors(final.folder):
        final.recover()
    foreign = final.foreign_entries()
    if foreign:
        raise RunConflictError(
            f"{final.folder} holds files that are not a kmat run's ({', '.join(foreign[:5])}); "
            "a run replaces its folder as a whole, so choose an empty or new folder"
        )
    layout = RunLayout.of(final.staging)  # built aside, then swapped in as a unit
    with output_errors(final.folder):
        layout.folder.mkdir(parents=True)
    return layout


def _write_subsets(
    layout: RunLayout, classes: list[str], shots: list[Sample], val: list[Sample] | None
) -> None:
    write_subset(shots, classes, layout.fewshot_train)
    if val is not None:
        write_subset(val, classes, layout.fewshot_val)


def _write_output(layout: RunLayout, output: RunOutput) -> None:
    """The checkpoint, embeddings, run config, history, log and result (written last) into the
    staging folder."""
    atomic_save_safetensors(layout.checkpoint, output.state, metadata=output.checkpoint_metadata)
    atomic_save_safetensors(layout.embeddings, output.embeddings)
    if output.head:
        atomic_save_safetensors(layout.head, output.head)
    atomic_write_json(layout.config, output.replay)
    atomic_write_bytes(layout.history, history_csv_bytes(output.result.get("history", [])))
    atomic_write_bytes(layout.log, output.log.encode("utf-8"))
    atomic_write_json(layout.result, output.result)


@contextlib.contextmanager
def _undone_on_failure(final: RunLayout) -> Iterator[None]:
    """No half-built folder left behind when the block fails; a broken swap undone; an output
    error names the run folder."""
    try:
        yield
    except BaseException as err:
        with contextlib.suppress(OSError):
            final.recover()
        if isinstance(err, OutputError) and Path(err.path) != final.folder:
            raise OutputError(
                final.folder,
                f"{err.reason} (writing {Path(err.path).name}); the run folder was left as it was",
                field="out",
            ) from err
        raise


def write_run(cfg: RunConfig, output: RunOutput, overwrite: bool = False) -> dict:
    """Write a computed run (:func:`compute_run`'s answer) into ``cfg.out`` as a unit, exactly as
    :func:`run` does; the caller holds the folder's lock. Returns the result."""
    check_run_folder(cfg.out, output.identity, overwrite)
    final = RunLayout.of(cfg.out)
    layout = _open_run_folder(final)
    with _undone_on_failure(final):
        _write_subsets(layout, output.classes, output.shots, output.val)
        _write_output(layout, output)
        with output_errors(final.folder):
            final.commit()
    return output.result


def _run(
    cfg: RunConfig,
    backbone: Backbone | None,
    store: FeatureStore | None,
    task: Task | None,
    overwrite: bool,
    annotations: dict[str, Any] | None = None,
) -> dict:
    final = RunLayout.of(cfg.out)
    if task is None:
        task = load_task(resolve_task(cfg.task, cfg.data_root))
    classes = task.classes
    staging: list[RunLayout] = []

    def check_folder(expected: dict[str, Any]) -> None:
        check_run_folder(cfg.out, expected, overwrite)

    def prepare_folder(shots: list[Sample], val: list[Sample] | None) -> None:
        staging.append(_open_run_folder(final))  # written only once the inputs have been read
        with _undone_on_failure(final):
            _write_subsets(staging[0], classes, shots, val)  # an unwritable place fails before training

    try:
        output = compute_run(
            cfg, backbone, store, task, on_identity=check_folder, before_training=prepare_folder
        )
    except BaseException:
        if not staging:
            raise
        with _undone_on_failure(final):
            raise
    output.result.update(annotations or {})
    with _undone_on_failure(final):
        _write_output(staging[0], output)
        with output_errors(final.folder):
            final.commit()
    return output.result


def check_finite(method: Method) -> None:
    """Refuse to save a diverged method: every learned parameter and class embedding must be finite
    (a finite loss history can still end in NaN prompts, e.g. after a huge learning rate)."""
    bad = [k for k, v in method.learnable_state().items() if not torch.isfinite(v).all()]
    bad += [
        f"class embeddings ({role})"
        for role, t in method.class_embeddings().items()
        if not torch.isfinite(t).all()
    ]
    if bad:
        raise TrainingDivergedError(
            f"{method.name}: training diverged: non-finite values in {', '.join(bad)} "
            f"(lr {method.cfg.lr:g}; a smaller learning rate may help); no checkpoint or result was written"
        )


def replay_config(cfg: RunConfig, method_config: MethodConfig) -> dict[str, Any]:
    """The run config file of a run: re-running it (``kmat train --config``) repeats the run."""
    return {**cfg.replay_dict(), "options": method_config.to_dict()}


def _checkpoint_config(cfg: RunConfig, method: Method) -> dict:
    return {
        **cfg.to_dict(),
        "method_config": method.cfg.to_dict(),
        "backbone_identity": method.backbone.identity(),
    }


def check_backbone_identity(
    backbone: Backbone, recorded: str | None, source: str | Path, allow_mismatch: bool = False
) -> None:
    """The backbone's weights must be those a run was trained with (``recorded``: its
    ``backbone_identity``, ``spec@sha256-prefix``); the spec may differ (a moved model folder).
    A mismatch is a :class:`CheckpointError`, or a warning when ``allow_mismatch``."""
    if not recorded:
        return
    want, found = recorded.rpartition("@")[2], backbone.identity().rpartition("@")[2]
    if want == found:
        return
    msg = (
        f"{source}: the run was trained with backbone weights {want} ({recorded.rpartition('@')[0]}); "
        f"the backbone loaded now ({backbone.name}) has weights {found}"
    )
    if not allow_mismatch:
        raise CheckpointError(
            msg
            + ". If the model moved, point at its new place; to use other weights anyway, allow the mismatch"
        )
    warnings.warn(msg + " (allowed: the numbers are not the run's)", stacklevel=2)


EVAL_SPLITS = ("test", "val")
"""The splits :func:`evaluate_checkpoint` scores."""


def split_summary(per_role: dict[str, dict]) -> dict[str, dict[str, float] | None]:
    """The ``metrics`` block of a split: ``high``, ``low`` and ``h`` as :func:`cross_modal_summary`
    gives them; a modality without images in the split is ``None`` (absent, not a zero), and so is
    ``h`` then."""
    if "high" in per_role and "low" in per_role:
        return cross_modal_summary(per_role["high"], per_role["low"])
    out: dict[str, dict[str, float] | None] = {
        role: {k: round(per_role[role][k], 4) for k in ("acc", "macro_f1")} if role in per_role else None
        for role in ("high", "low")
    }
    out["h"] = None
    return out


def evaluate_checkpoint(
    checkpoint: str | Path,
    backbone: Backbone | None = None,
    task: str | None = None,
    data_root: str | None = None,
    backbone_spec: str | None = None,
    allow_backbone_mismatch: bool = False,
    split: str = "test",
) -> dict:
    """Re-build a trained method from its checkpoint and evaluate it; returns the ``metrics`` block
    of ``split`` (:func:`split_summary`).

    ``split``: ``"test"`` (the test splits of both modalities: the run's ``metrics``) or ``"val"``
    (their validation splits: the high-end one is the run's ``val.high``; a modality without
    validation images, typically the low end, is ``None``). The model is the checkpoint's, i.e. the
    run's last epoch, as in the paper: nothing is re-selected.
    ``backbone_spec`` loads another copy of the backbone (a moved model folder); its weights must be
    the run's unless ``allow_backbone_mismatch``."""
    if split not in EVAL_SPLITS:
        raise ConfigError(f"split must be one of {', '.join(EVAL_SPLITS)}, not {split!r}")
    state, saved = load_checkpoint(checkpoint)
    if not saved:
        raise CheckpointError(f"{checkpoint}: no run configuration in the checkpoint metadata")
    recorded = saved.pop("backbone_identity", None)
    if backbone_spec is not None:
        saved["backbone"] = backbone_spec
    method_config = saved.pop("method_config", {})
    cfg = RunConfig(
        **{k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(RunConfig)}}
    )
    cfg.options = {**method_config}
    if task is not None:
        cfg.task = task
    if data_root is not None:
        cfg.data_root = data_root
    task_obj = load_task(resolve_task(cfg.task, cfg.data_root))
    if backbone is None and backbone_spec is None:  # the recorded one: say what to do if it moved
        backbone = load_recorded_backbone(cfg.backbone, checkpoint, resolve_device(cfg.device))
    backbone = _backbone_for(cfg, backbone)
    check_backbone_identity(backbone, recorded, checkpoint, allow_backbone_mismatch)
    method = build_method(cfg, task_obj, backbone)
    head_file = RunLayout.of(Path(checkpoint).parent).head
    if head_file.is_file() or method.head():  # first: a fitted cache sets the shapes of what follows
        method.load_head(load_head(Path(checkpoint).parent))
    missing = set(method.learnable_state()) ^ set(state)
    if missing:
        raise CheckpointError(
            f"{checkpoint}: parameters do not match method {cfg.method!r}: {sorted(missing)}"
        )
    own = dict(method.named_parameters())
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape
    ]
    if wrong:
        raise BackboneError(
            f"{checkpoint}: the run was trained with a backbone of another architecture (learned vs "
            f"this backbone's shapes: {'; '.join(wrong[:3])}); evaluate it with the backbone it was "
            "trained with (--backbone)"
        )
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].device))
    feats = _test_features(cfg, task_obj, backbone, FeatureStore(disk=cfg.feature_cache), split)
    if not feats:
        raise TaskError(f"{task_obj.folder}: no {split} images in either modality ({task_obj.name})")
    return split_summary(evaluate(method, feats, task_obj))
