"""kmat's errors: one hierarchy for "the input is wrong", apart from bugs.

The command line turns a :class:`KmatError` into one ``kmat: error:`` line and exit status 2; any
other exception is a bug and keeps its traceback. Library messages say what is wrong and where (the
file, line or field); they do not name command-line flags. ``field`` names the configuration field
at fault, when there is one, so that the command line can add the matching flag.

Kept free of heavy imports (torch, open_clip), so that every command can catch them cheaply.
"""

from __future__ import annotations


class KmatError(Exception):
    """Base of every error caused by input, configuration or environment (not by a bug)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigError(KmatError, ValueError):
    """A run, method or grid setting is invalid (``field`` names it)."""


class TaskError(KmatError, ValueError):
    """A task folder, manifest or description file is invalid."""


class DescriptionsMissingError(TaskError):
    """A task has no descriptions file (none in its folder, none shipped) and a method needs one."""


class ImageError(KmatError, ValueError):
    """An image file is missing, unreadable or not an image."""


class OutputError(KmatError):
    """An output path cannot be written: a full disk or quota, a read-only or forbidden folder, or
    a file where a folder must be (or the reverse). ``path`` is the path at fault, ``reason`` says
    why (without the path)."""

    def __init__(self, path: object, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", field=field)
        self.path = str(path)
        self.reason = reason


class BackboneError(KmatError, RuntimeError):
    """A backbone could not be loaded or is not of a supported shape."""


class CheckpointError(KmatError, ValueError):
    """A checkpoint or run folder is missing, incomplete or does not match its method."""


class ResultError(CheckpointError):
    """A run's ``result.json`` is unreadable or not of the shape a report needs, or runs cannot be
    put in one table (the message names the files and the fields)."""


class RunConflictError(KmatError):
    """A run would overwrite a run made with another configuration."""


class RunBusyError(RunConflictError):
    """Another kmat process is writing the same run folder right now."""


class PrepareError(KmatError, ValueError):
    """A raw dataset folder cannot be turned into a manifest (the message says what and where).
    ``options`` names the preparer options that fix it, each with a suggested value or ``None``
    (the command line adds the matching flags)."""

    def __init__(
        self, message: str, *, field: str | None = None, options: dict[str, str | None] | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.options = dict(options or {})


class GeneratorError(KmatError, RuntimeError):
    """The description generator's endpoint failed or answered something unusable."""


class TrainingDivergedError(KmatError, FloatingPointError):
    """Training produced a non-finite loss (the message gives the epoch, step and terms)."""


class CacheError(KmatError, RuntimeError):
    """The cache folder (``$KMAT_CACHE``) cannot be created or written where a cache is needed."""


class DeviceError(KmatError, ValueError):
    """A requested device does not exist or is not available."""


USER_ERRORS: tuple[type[BaseException], ...] = (KmatError,)
