"""Method configurations: one dataclass per method, each field declared once with its help.

Every field of a method's config is an *option*: settable from ``kmat train -o NAME=VALUE`` (and a
generated ``--name`` flag), from a run config file, or from Python. A field is declared with
:func:`option` (default, one-line help, bounds); a subclass that only changes a default re-declares
the field with a plain value (``epochs: int = 10``) and inherits the help and bounds of the class
that declared it; one that re-declares it with :func:`option` replaces them (Tip-Adapter-F's ``lr``
is AdamW's). Values are checked in ``__post_init__``, with the field's name in the
message.

Kept free of torch, so that ``--help`` and config files can be handled cheaply.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, get_args, get_origin

from kmat.errors import ConfigError

_MISSING = dataclasses.MISSING


def option(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A config field: its default, one line of help, and the bounds ``__post_init__`` enforces."""
    meta = {"help": help, "min": min, "max": max, "min_exclusive": min_exclusive, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    """What the command line and ``--help-options`` show of one field."""

    name: str
    type: Any
    default: Any
    help: str
    declared_by: type
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def type_name(self) -> str:
        return type_name(self.type)


def type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    args = [a for a in get_args(tp) if a is not type(None)]
    if _is_optional(tp) and len(args) == 1:
        return f"{type_name(args[0])} | None"
    return str(tp).replace("typing.", "")


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType) and type(None) in get_args(tp)


def _base_type(tp: Any) -> Any:
    """``int`` for ``int | None``; the type itself otherwise."""
    if _is_optional(tp):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def options_of(cls: type) -> dict[str, OptionInfo]:
    """Every field of a config dataclass with its help and bounds (looked up along the MRO), but
    those the method does not use (``MethodConfig.unused``: not options)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, OptionInfo] = {}
    unused: frozenset[str] = getattr(cls, "unused", frozenset())
    for f in dataclasses.fields(cls):
        if f.name in unused:
            continue
        declarer: type = cls
        meta: Any = f.metadata
        for base in cls.__mro__:  # the most derived class that declared it with help (a subclass may
            # re-declare a field with option(...) to change its help or bounds; a plain value keeps them)
            bf = getattr(base, "__dataclass_fields__", {}).get(f.name)
            if bf is not None and bf.metadata.get("help"):
                declarer, meta = base, bf.metadata
                break
        default = f.default if f.default is not _MISSING else None
        if f.default_factory is not _MISSING:
            default = f.default_factory()
        out[f.name] = OptionInfo(
            name=f.name,
            type=hints[f.name],
            default=default,
            help=meta.get("help", ""),
            declared_by=declarer,
            min=meta.get("min"),
            max=meta.get("max"),
            min_exclusive=bool(meta.get("min_exclusive")),
            choices=meta.get("choices"),
        )
    return out


def parse_value(info: OptionInfo, text: str) -> Any:
    """A command-line string as the field's type (``none`` for ``X | None``; JSON for the rest)."""
    tp = _base_type(info.type)
    s = text.strip()
    if _is_optional(info.type) and s.lower() in ("none", "null", ""):
        return None
    try:
        if tp is bool:
            low = s.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(s)
        if tp is int:
            return int(s)
        if tp is float:
            return float(s)
        if tp is str:
            return text
        return json.loads(s)
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(
            f"option {info.name}: cannot read {text!r} as {info.type_name}", field=info.name
        ) from None


def check_value(info: OptionInfo, value: Any, owner: str) -> Any:
    """The value, checked against the field's type and bounds (ints are accepted for floats)."""
    where = f"{owner}.{info.name}"
    if value is None:
        if _is_optional(info.type):
            return None
        raise ConfigError(f"{where} must be a {info.type_name}, got None", field=info.name)
    tp = _base_type(info.type)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tp in (int, float, str, bool):
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{where} must be a {info.type_name}, got {value!r} ({type(value).__name__})", field=info.name
            )
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value}", field=info.name)
    if info.choices is not None and value not in info.choices:
        raise ConfigError(f"{where} must be one of {list(info.choices)}, got {value!r}", field=info.name)
    if info.min is not None and isinstance(value, int | float):
        if value < info.min or (info.min_exclusive and value == info.min):
            op = ">" if info.min_exclusive else ">="
            raise ConfigError(f"{where} must be {op} {_bound(info.min)}, got {value}", field=info.name)
    if info.max is not None and isinstance(value, int | float) and value > info.max:
        raise ConfigError(f"{where} must be <= {_bound(info.max)}, got {value}", field=info.name)
    return value


def _bound(b: float) -> str:
    """A bound as a reader writes it: ``2147483647``, ``0.5``, ``1e-06``."""
    return str(int(b)) if float(b).is_integer() else f"{b:g}"


class Options:
    """Mixin of config dataclasses: checks every field in ``__post_init__``."""

    def __post_init__(self) -> None:
        for name, info in options_of(type(self)).items():
            object.__setattr__(self, name, check_value(info, getattr(self, name), type(self).__name__))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses


C = TypeVar("C", bound="MethodConfig")


@dataclass
class MethodConfig(Options):
    """The training recipe every method has (the one loop of :mod:`kmat.engine`).

    SGD with momentum and weight decay; ``warmup_epochs`` at the constant ``warmup_lr``, then a
    cosine schedule from ``lr``, stepped once per epoch.
    """

    epochs: int = option(50, "training epochs (0: evaluate the initial prompts)", min=0)
    batch_size: int = option(32, "high-end images per training step", min=1)
    lr: float = option(0.002, "base learning rate of SGD", min=0)
    momentum: float = option(0.9, "SGD momentum", min=0, max=1)
    weight_decay: float = option(5e-4, "SGD weight decay", min=0)
    warmup_epochs: int = option(1, "epochs at the constant warm-up learning rate", min=0)
    warmup_lr: float = option(1e-5, "warm-up learning rate", min=0)
    logit_scale: float | None = option(
        None, "logit scale s of s * f . t (None: the backbone's exp(logit_scale))", min=0, min_exclusive=True
    )

    # recipe fields a method does not use (fitted in closed form, its own optimiser): they keep their
    # defaults, are not options (``--help-options``, grids) and setting one is a ConfigError saying why
    unused: ClassVar[frozenset[str]] = frozenset()
    unused_why: ClassVar[str] = ""


@dataclass(frozen=True)
class PublishedDefaults:
    """Values a method's authors published for a kind of data, and where they come from.

    A method's ``task_defaults`` maps a high-end dataset key (the dataset the run trains on) to
    these; they apply over the method's defaults and under the user's options, and every run
    records which applied (``result.json``: ``config.published_defaults``).
    """

    values: dict[str, Any]
    source: str


def resolve_config(cls: type[C], overrides: dict[str, Any]) -> C:
    """``cls`` with the given overrides; an unknown name is a :class:`ConfigError`.

    ``None`` sets a field that admits it (``init_words=None``) and means "not given" for the others.
    """
    known = options_of(cls)
    unused: frozenset[str] = getattr(cls, "unused", frozenset())
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for k in sorted(unused & set(overrides)):  # a recorded config holds them at their defaults
        if overrides[k] is not None and overrides[k] != defaults.get(k):
            raise ConfigError(
                f"{cls.__name__}: option {k} is not used by this method ({cls.unused_why or 'see its docs'}); "
                "leave it out"
            )  # no field: the command line would add how to set the very option refused here
    overrides = {k: v for k, v in overrides.items() if k not in unused}
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in known)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no option(s) {unknown}; its options: {sorted(known)}", field=unknown[0]
        )
    given = {
        k: v for k, v in overrides.items() if k in known and (v is not None or _is_optional(known[k].type))
    }
    return cls(**given)
