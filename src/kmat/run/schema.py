"""The ``result.json`` of a run: its typed shape, its schema version, and the run's identity.

``identity`` is what makes two runs "the same run": a grid skips a run whose folder holds a result
with the same identity, and a run refuses to replace a result of another *configuration* unless
told to. The identity also holds the run's *inputs* (:data:`INPUT_KEYS`): the backbone's weights
(sha256 prefix) and the task data's fingerprint (:mod:`kmat.data.fingerprint`, with the
descriptions). A result whose inputs have changed since is stale: a grid redoes it, and a run may
replace it without being told to (it says why).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, TypedDict

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from kmat.errors import CheckpointError, ResultError
from kmat.utils.validation import json_text, summary

SCHEMA_VERSION = 3  # 1: no schema_version, no config.json; 2: no config.task_data


class RoleMetrics(TypedDict):
    acc: float
    macro_f1: float


class Metrics(TypedDict):
    high: RoleMetrics
    low: RoleMetrics
    h: RoleMetrics


class Result(TypedDict, total=False):
    schema_version: int
    method: str
    task: str
    shots: int
    seed: int
    backbone: str
    config: dict[str, Any]  # every RunConfig field, method_config (the resolved method config), task info
    metrics: Metrics
    per_class: dict[str, dict[str, float | None]]
    confusion: dict[str, list[list[int]]]
    n_test: dict[str, int]
    val: dict[str, dict[str, float]]  # role -> acc, macro_f1 (%), n: the full validation splits
    history: list[dict[str, Any]]
    timing: dict[str, float]
    versions: dict[str, str]
    protocol: str  # how the configuration was chosen, when ``kmat tune`` chose it (high-val / low-val)
    tuning: dict[str, Any]  # the tune that chose it (study folder, objective, best trial)


NOT_STRICT = "not strict zero-shot"  # in the protocol of a result that saw low-end labels before its test


def is_strict_zero_shot(result: Result) -> bool:
    """Whether a result is strictly zero-shot on the low-end modality: no low-end label chose any
    of its settings. Every run is, unless its ``protocol`` says otherwise (``kmat tune
    --select-on low-val``: ``"low-val (not strict zero-shot)"``)."""
    return NOT_STRICT not in str(result.get("protocol") or "")


def _percent(value: float) -> float:
    if not math.isfinite(value):
        raise PydanticCustomError("not_finite", "{value} is not a finite number", {"value": json_text(value)})
    if not 0.0 <= value <= 100.0:
        raise PydanticCustomError(
            "not_percent", "{value} is not a percentage in [0, 100]", {"value": json_text(value)}
        )
    return value


Percent = Annotated[float, AfterValidator(_percent)]


def _square(matrix: list[list[int]]) -> list[list[int]]:
    if any(len(row) != len(matrix) for row in matrix):
        raise PydanticCustomError("not_square", "not a square matrix (one row and column per class)")
    return matrix


Confusion = Annotated[list[list[int]], AfterValidator(_square)]


class _Strict(BaseModel):
    # JSON types as written (no "2" for 2, no true for 1.0); unknown keys are kept, not refused
    model_config = ConfigDict(strict=True, extra="allow")


class RoleMetricsModel(_Strict):
    acc: Percent
    macro_f1: Percent


class MetricsModel(_Strict):
    high: RoleMetricsModel
    low: RoleMetricsModel
    h: RoleMetricsModel


class ValMetricsModel(_Strict):
    acc: Percent
    macro_f1: Percent
    n: int | None = None


class ResultConfigModel(_Strict):
    """The parts of ``config`` a report compares runs by (every other key is kept as it is)."""

    backbone: str | None = None
    backbone_identity: str | None = None
    precision: str | None = None
    augment: bool | None = None
    options: dict[str, Any] | None = None
    method_config: dict[str, Any] | None = None


class ResultModel(_Strict):
    """What the reports (tables, results.csv, sensitivity, figures) read of a ``result.json``:
    metrics as finite percentages, the seed and method, and the optional blocks' shapes."""

    schema_version: int = 1
    method: str
    seed: int
    task: str | None = None
    shots: int | None = None
    backbone: str | None = None
    config: ResultConfigModel | None = None
    metrics: MetricsModel
    per_class: dict[str, dict[str, Percent | None]] | None = None
    confusion: dict[str, Confusion] | None = None
    val: dict[str, ValMetricsModel] | None = None
    history: list[dict[str, Any]] | None = None


_CUSTOM_ERRORS = ("not_finite", "not_percent", "not_square")  # their messages show the value


def check_result(data: Any, path: str | Path) -> Result:
    """``data`` (a parsed ``result.json``) if it has the shape of :class:`ResultModel`; else a
    :class:`ResultError` naming the file and the fields: ``.../result.json: metrics.low.acc: NaN is
    not a finite number``."""
    try:
        ResultModel.model_validate(data)
    except ValidationError as err:
        raise ResultError(f"{path}: {summary(err, bare=_CUSTOM_ERRORS)}") from None
    return data  # checked above


def read_checked_result(path: str | Path) -> Result:
    """:func:`read_result` and :func:`check_result`: a result a report can rely on, or a
    :class:`ResultError` naming the file and what is wrong with it."""
    try:
        data = read_result(path)
    except ResultError:
        raise
    except CheckpointError as err:
        raise ResultError(str(err)) from None
    return check_result(data, path)


CONFIG_KEYS = ("method", "task", "shots", "seed", "backbone", "precision", "augment", "method_config")
INPUT_KEYS = ("backbone_weights", "task_data")  # what the run read; None: not recorded (older kmat)
IDENTITY_KEYS = CONFIG_KEYS + INPUT_KEYS


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def identity(
    method: str,
    task: str,
    shots: int,
    seed: int,
    backbone: str,
    precision: str,
    augment: bool,
    method_config: dict[str, Any],
    backbone_weights: str | None = None,
    task_data: str | None = None,
) -> dict[str, Any]:
    """The settings and inputs that make a run's numbers what they are (JSON-normalised)."""
    return _normal(
        {
            "method": method,
            "task": task,
            "shots": shots,
            "seed": seed,
            "backbone": backbone,
            "precision": precision,
            "augment": augment,
            "method_config": method_config,
            "backbone_weights": backbone_weights,
            "task_data": task_data,
        }
    )


def identity_of(result: Result) -> dict[str, Any]:
    """The identity recorded in a result (older results: missing settings at their defaults)."""
    cfg = result.get("config") or {}
    weights = str(cfg.get("backbone_identity") or "").rpartition("@")[2]
    return identity(
        method=result.get("method", ""),
        task=result.get("task", ""),
        shots=result.get("shots", -1),
        seed=result.get("seed", -1),
        backbone=cfg.get("backbone", result.get("backbone", "")),
        precision=cfg.get("precision", "fp32"),
        augment=cfg.get("augment", True),
        method_config=cfg.get("method_config", {}),
        backbone_weights=weights or None,
        task_data=cfg.get("task_data"),
    )


def differences(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...] = IDENTITY_KEYS) -> list[str]:
    """``["seed: 1 -> 2", "method_config.lr: 0.002 -> 0.01"]`` between two identities (over ``keys``)."""
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if k == "method_config" and isinstance(va, dict) and isinstance(vb, dict):
            for name in sorted(set(va) | set(vb)):
                if va.get(name) != vb.get(name):
                    out.append(f"{k}.{name}: {va.get(name)!r} -> {vb.get(name)!r}")
        elif va != vb:
            out.append(f"{k}: {va!r} -> {vb!r}")
    return out


def read_result(path: str | Path) -> Result:
    """A ``result.json``; :class:`CheckpointError` naming the file when it is unreadable or not a result."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no result (is this a finished kmat run?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable result ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise CheckpointError(f"{path}: not a kmat result (no 'metrics' object)")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: result schema version {version!r} is newer than this kmat understands ({SCHEMA_VERSION})"
        )
    return data  # type: ignore[return-value]  # checked above as far as readers rely on it
