"""The errors that mean "bad input": the command line reports them in one line, without a traceback.

Kept free of heavy imports (torch, open_clip), so that every command can catch them cheaply.
``TaskError`` (kmat.data.task) and ``ImageError`` (kmat.data.images) are ``ValueError``s.
"""

from __future__ import annotations


class BackboneError(RuntimeError):
    """A backbone could not be loaded or is not of a supported shape."""


USER_ERRORS: tuple[type[BaseException], ...] = (BackboneError, FileNotFoundError, ValueError, KeyError)
