"""The errors that mean "bad input": the command line reports them in one line, without a traceback."""

from __future__ import annotations

from kmat.backbone import BackboneError
from kmat.data.images import ImageError
from kmat.data.task import TaskError

USER_ERRORS: tuple[type[BaseException], ...] = (
    BackboneError, TaskError, ImageError, FileNotFoundError, ValueError, KeyError,
)
