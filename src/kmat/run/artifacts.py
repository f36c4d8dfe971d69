"""Reading a finished run's tensor files, verified: the class embeddings and the method's head.

Kept apart from :mod:`kmat.run.predict` (deployment) and :mod:`kmat.run.runner` (training,
``kmat evaluate``), which both read them.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from kmat.errors import CheckpointError
from kmat.run.layout import RunLayout
from kmat.utils.io import DamagedFileError, read_safetensors


def load_embeddings(path: str | Path) -> dict[str, Tensor]:
    """A run's ``class_embeddings.safetensors`` (modality role -> class embeddings), or another of
    its tensor files, verified: a missing, damaged or non-finite file is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; train the run again to write it")
    try:
        return read_safetensors(path)[0]
    except (OSError, DamagedFileError) as err:
        raise CheckpointError(
            f"{path}: damaged or unreadable ({err}); train the run again to rewrite it"
        ) from err


def load_head(run_dir: str | Path) -> dict[str, Tensor]:
    """A run's ``head.safetensors`` (verified), or ``{}`` for a run whose method saved none."""
    path = RunLayout.of(run_dir).head
    return load_embeddings(path) if path.is_file() else {}
