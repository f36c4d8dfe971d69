"""Where a run keeps its files: the one module that knows the run-folder layout.

A run folder (``kmat train --out DIR``, or one cell of a grid) holds::

    result.json                     metrics, every resolved setting, history (see kmat.run.schema)
    config.json                     the run configuration, re-runnable with ``kmat train --config``
    checkpoint.safetensors          the learned parameters, with the configuration in its metadata
    class_embeddings.safetensors    the final class embeddings per modality role (deployment, figures)
    head.safetensors                only a method that needs more to classify a new image (a cache,
                                    an adapter, a meta-net): those tensors (kmat.methods.base.Method.head)
    fewshot_train.csv, fewshot_val.csv   the few-shot subsets the run used
    history.csv                     one row per epoch: the lr, every loss term, the high-end
                                    validation accuracy / macro-F1 (result.json's history as a table)
    log.txt                         what was said while the run computed: kmat's log records and
                                    Python warnings, between a start line (settings) and an end
                                    line (timing, metrics); no progress bars (kmat.run.runlog)
    error.json                      only a failed grid run: the error and its traceback

A grid writes its runs to ``OUT/runs/<task>/<label>/<shots>shot[-<tag>]/seed<S>``: ``label`` is the
method or ablation row, ``tag`` a short, readable list of the options given on top of the method's
defaults (so a K-shot curve or a lambda sweep can share one output folder).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
EMBEDDINGS_FILE = "class_embeddings.safetensors"
HEAD_FILE = "head.safetensors"
FEWSHOT_TRAIN_FILE = "fewshot_train.csv"
FEWSHOT_VAL_FILE = "fewshot_val.csv"
HISTORY_FILE = "history.csv"
LOG_FILE = "log.txt"
ERROR_FILE = "error.json"
RUNS_DIR = "runs"
FINAL_DIR = "final"  # kmat tune: OUT/final/seed<S>, the chosen configuration run on every seed
RUN_FILES = frozenset(
    {
        RESULT_FILE,
        CONFIG_FILE,
        CHECKPOINT_FILE,
        EMBEDDINGS_FILE,
        HEAD_FILE,
        FEWSHOT_TRAIN_FILE,
        FEWSHOT_VAL_FILE,
        HISTORY_FILE,
        LOG_FILE,
        ERROR_FILE,
    }
)
MAX_TAG_CHARS = 60


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder."""

    folder: Path

    @classmethod
    def of(cls, folder: str | Path) -> RunLayout:
        return cls(Path(folder))

    @property
    def result(self) -> Path:
        return self.folder / RESULT_FILE

    @property
    def config(self) -> Path:
        return self.folder / CONFIG_FILE

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    @property
    def embeddings(self) -> Path:
        return self.folder / EMBEDDINGS_FILE

    @property
    def head(self) -> Path:
        return self.folder / HEAD_FILE

    @property
    def fewshot_train(self) -> Path:
        return self.folder / FEWSHOT_TRAIN_FILE

    @property
    def fewshot_val(self) -> Path:
        return self.folder / FEWSHOT_VAL_FILE

    @property
    def history(self) -> Path:
        return self.folder / HISTORY_FILE

    @property
    def log(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def error(self) -> Path:
        return self.folder / ERROR_FILE

    def exists(self) -> bool:
        """Whether a finished run is here (its ``result.json`` is written last)."""
        return self.result.is_file()

    @property
    def staging(self) -> Path:
        """The sibling folder a run is built in before it replaces ``folder`` as a whole."""
        return self.folder.with_name(f".{self.folder.name}.partial")

    @property
    def lock_file(self) -> Path:
        """The sibling file a process holds locked while it writes this run (:mod:`kmat.run.lock`)."""
        return self.folder.with_name(f".{self.folder.name}.lock")

    @property
    def previous(self) -> Path:
        """Where the run being replaced waits while the new one is swapped in."""
        return self.folder.with_name(f".{self.folder.name}.old")

    def foreign_entries(self) -> list[str]:
        """Entries of ``folder`` that no kmat run writes (a run never replaces such a folder)."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p.name for p in self.folder.iterdir() if p.name not in RUN_FILES and not p.name.startswith(".")
        )

    def recover(self) -> None:
        """Undo what an interrupted swap left: restore the previous run if the new one never
        arrived, and drop a half-built staging folder."""
        if not self.folder.exists() and self.previous.is_dir():
            self.previous.rename(self.folder)
        for leftover in (self.staging, self.previous):
            if leftover.exists():
                shutil.rmtree(leftover)

    def commit(self) -> None:
        """Swap the finished staging folder in for ``folder``: readers see the old run or the new
        one, never a mix (an interrupted swap is undone by :meth:`recover`)."""
        if self.folder.exists():
            if self.previous.exists():
                shutil.rmtree(self.previous)
            self.folder.rename(self.previous)
        self.staging.rename(self.folder)
        if self.previous.exists():
            shutil.rmtree(self.previous)


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v) if isinstance(v, int | str) else json.dumps(v, sort_keys=True)


def options_tag(options: Mapping[str, Any]) -> str:
    """``"epochs=2,lambda_fgw=0.5"``: the options sorted by name, file-name safe; "" for none.

    A tag longer than :data:`MAX_TAG_CHARS` keeps its start and gets a hash of the whole.
    """
    text = ",".join(f"{k}={_value_text(v)}" for k, v in sorted(options.items()))
    text = "".join(c if c.isalnum() or c in "=,.+-_" else "_" for c in text)
    if len(text) > MAX_TAG_CHARS:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        text = f"{text[: MAX_TAG_CHARS - 9]}~{digest}"
    return text


def grid_run_dir(
    out: str | Path, task: str, label: str, shots: int, seed: int, options: Mapping[str, Any] | None = None
) -> Path:
    """``OUT/runs/<task>/<label>/<shots>shot[-<tag>]/seed<S>``."""
    tag = options_tag(options or {})
    setting = f"{shots}shot" + (f"-{tag}" if tag else "")
    return Path(out) / RUNS_DIR / task / label / setting / f"seed{seed}"


def iter_grid_runs(out: str | Path) -> Iterator[tuple[str, str, str, RunLayout]]:
    """``(task, label, setting, layout)`` of every finished run under ``OUT/runs``, sorted."""
    for path in sorted(Path(out).glob(f"{RUNS_DIR}/*/*/*/seed*/{RESULT_FILE}")):
        folder = path.parent
        yield folder.parts[-4], folder.parts[-3], folder.parts[-2], RunLayout(folder)


def iter_final_runs(out: str | Path) -> Iterator[RunLayout]:
    """The finished final runs of a ``kmat tune`` output folder (``OUT/final/seed<S>``), sorted."""
    for path in sorted(Path(out).glob(f"{FINAL_DIR}/seed*/{RESULT_FILE}")):
        yield RunLayout(path.parent)
