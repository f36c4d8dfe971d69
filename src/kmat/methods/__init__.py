"""Methods, registered by name. A method is one module: its config dataclass (recipe and options,
:mod:`kmat.methods.config`), its prompt learner and its loss terms (:class:`kmat.methods.base.Method`).
A module in this package is found by itself; a method defined elsewhere registers with
:func:`register` before it is used, or is found through a ``kmat.methods`` entry point of the
package that defines it (so that ``kmat`` commands know it too).
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from kmat.errors import ConfigError

if TYPE_CHECKING:
    from kmat.methods.base import Method

_REGISTRY: dict[str, type[Method[Any]]] = {}
_DISCOVERED = False
_NOT_METHODS = ("base", "config", "published")


def register(cls: type[Method[Any]]) -> type[Method[Any]]:
    """Class decorator: make a :class:`~kmat.methods.base.Method` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a registered method (tests, notebooks that redefine one)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    """Import the built-in method modules, then every installed package's ``kmat.methods`` entry
    point (a module that registers its methods; ``[project.entry-points."kmat.methods"]``)."""
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _NOT_METHODS:
                importlib.import_module(f"{__name__}.{info.name}")
        for ep in entry_points(group="kmat.methods"):
            try:
                ep.load()
            except Exception as err:  # a broken plug-in must not break every command
                warnings.warn(
                    f"kmat: the method plug-in {ep.name!r} ({ep.value}) failed to load: {err}", stacklevel=2
                )


def available_methods() -> list[str]:
    """The names of the registered methods (the built-in ones and any :func:`register` added), sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[Method[Any]]:
    _discover()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}", field="method"
        )
    return _REGISTRY[name]


__all__ = ["available_methods", "get_method", "register", "unregister"]
