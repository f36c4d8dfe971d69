"""Methods, registered by name. A method is one module in this package: its defaults (a
dataclass), its prompt learner and its own loss terms. Adding a file here adds a method."""

from __future__ import annotations

import importlib
import pkgutil

from kmat.errors import ConfigError
from kmat.methods.base import Method, MethodContext

_REGISTRY: dict[str, type[Method]] = {}
_DISCOVERED = False


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a :class:`Method` available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    global _DISCOVERED
    if not _DISCOVERED:
        for info in pkgutil.iter_modules(__path__):
            if info.name not in ("base",):
                importlib.import_module(f"{__name__}.{info.name}")
        _DISCOVERED = True


def available_methods() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[Method]:
    _discover()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


__all__ = ["Method", "MethodContext", "available_methods", "get_method", "register"]
