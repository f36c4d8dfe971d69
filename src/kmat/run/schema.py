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
from pathlib import Path
from typing import Any, TypedDict

from kmat.errors import CheckpointError

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
    cfg = result.get("config", {})
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
