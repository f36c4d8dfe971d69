"""Command lines and run configurations the tests share: the tiny local model, the CPU, few epochs.

Each builder returns the arguments for ``kmat.cli.main`` (or for ``python -m kmat``); a keyword left
at ``None`` (or ``False``) leaves its option out, so the command line is exactly what a test asks
for. Arguments in ``*extra`` go last, after ``--out``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kmat.run.config import RunConfig
from kmat.run.experiments import method_options


def local_dir(model_dir: str | Path) -> str:
    """The ``--backbone`` spec of a model folder."""
    return f"local-dir:{model_dir}"


def _opt(flag: str, value: object) -> list[str]:
    return [] if value is None else [flag, str(value)]


def _model_device_out(
    model_dir: str | Path,
    out: str | Path,
    extra: tuple[str, ...],
    *,
    epochs: int | str | None,
    shots: int | str | None = None,
    quiet: bool = True,
) -> list[str]:
    """The options every command here shares: the model, the CPU, the output folder, then ``extra``."""
    return [
        "--backbone",
        local_dir(model_dir),
        *_opt("--epochs", epochs),
        *_opt("--shots", shots),
        "--device",
        "cpu",
        *(["--quiet"] if quiet else []),
        "--out",
        str(out),
        *extra,
    ]


def train_argv(
    model_dir: str | Path,
    task: str | Path,
    out: str | Path,
    *extra: str,
    method: str | None = None,
    epochs: int | str | None = None,
    shots: int | str | None = None,
    quiet: bool = True,
) -> list[str]:
    """``kmat train`` of ``task`` with the model in ``model_dir`` on the CPU into ``out``."""
    return [
        "train",
        "--task",
        str(task),
        *_opt("--method", method),
        *_model_device_out(model_dir, out, extra, epochs=epochs, shots=shots, quiet=quiet),
    ]


def reproduce_argv(
    model_dir: str | Path,
    task: str | Path,
    out: str | Path,
    *extra: str,
    table: str | None = "2",
    methods: Iterable[str] | None = None,
    seeds: Iterable[int | str] = (1,),
    epochs: int | str | None = 1,
    shots: int | str | None = None,
    quiet: bool = True,
    figures: bool = False,
) -> list[str]:
    """``kmat reproduce`` of one task with the model in ``model_dir`` on the CPU into ``out``
    (Table 2, one seed, one epoch, no figures unless told otherwise)."""
    return [
        "reproduce",
        *_opt("--table", table),
        *(["--methods", *methods] if methods is not None else []),
        "--tasks",
        str(task),
        "--seeds",
        *map(str, seeds),
        *([] if figures else ["--no-figures"]),
        *_model_device_out(model_dir, out, extra, epochs=epochs, shots=shots, quiet=quiet),
    ]


def tune_argv(
    model_dir: str | Path,
    task: str | Path,
    out: str | Path,
    *extra: str,
    space: Iterable[str],
    trials: int,
    epochs: int | str = 1,
    seeds: Iterable[int | str] | None = None,
) -> list[str]:
    """``kmat tune`` of ``task`` over ``space`` with the model in ``model_dir`` on the CPU into ``out``."""
    return [
        "tune",
        "--task",
        str(task),
        "--space",
        *space,
        "--trials",
        str(trials),
        *(["--seeds", *map(str, seeds)] if seeds is not None else []),
        *_model_device_out(model_dir, out, extra, epochs=epochs),
    ]


def toy_run_config(task: str | Path, out: str | Path, model_dir: str | Path, **overrides: Any) -> RunConfig:
    """A quiet CPU run of ``task`` with the model in ``model_dir``: 2 shots, seed 1, one epoch where
    epochs is an option of the method; ``overrides`` replace any of these or set other fields
    (``method=``, ``shots=``, ``options={"epochs": 2}``)."""
    method = overrides.get("method", RunConfig.method)
    fields: dict[str, Any] = {
        "backbone": local_dir(model_dir),
        "shots": 2,
        "seed": 1,
        "device": "cpu",
        "show_progress": False,
        "options": method_options(method, {"epochs": 1}),
    }
    return RunConfig(task=str(task), out=str(out), **{**fields, **overrides})
