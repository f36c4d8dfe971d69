"""Command-line options generated from config dataclasses.

Flags come from the fields of :class:`kmat.run.config.RunConfig` and of every registered method's
config (:mod:`kmat.methods.config`): a field ``lambda_fgw`` becomes ``--lambda-fgw`` (booleans get
``--x/--no-x``), its help and default come from the field, and ``-o NAME=VALUE`` sets any method
option by name. Flags default to "not given", so that a config file (``--config``) and the method's
own defaults fill what the user did not set. Each default exists only in its dataclass.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kmat.errors import ConfigError
from kmat.methods.config import OptionInfo, options_of, parse_value
from kmat.utils.io import read_text_file

UNSET: Any = argparse.SUPPRESS  # a flag not given leaves no attribute


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _fmt_default(v: Any) -> str:
    return "None" if v is None else (repr(v) if isinstance(v, str) else str(v))


def add_field_flag(
    group: argparse._ActionsContainer, info: OptionInfo, help: str | None = None, dest: str | None = None
) -> None:
    """One generated flag for a config field (its value is parsed and checked like ``-o``)."""
    text = help if help is not None else f"{info.help} (default: {_fmt_default(info.default)})"
    text = text.replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": dest or info.name, "default": UNSET, "help": text}
    base = info.type_name.removesuffix(" | None")
    if base == "bool":
        group.add_argument(flag_name(info.name), action=argparse.BooleanOptionalAction, **kwargs)
        return
    if info.choices is not None:
        kwargs["choices"] = list(info.choices)
    group.add_argument(
        flag_name(info.name), type=lambda s: parse_value(info, s), metavar=base.upper(), **kwargs
    )


def add_run_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Flags for the fields of :class:`RunConfig` (``--task``, ``--shots``, ``--precision``, ...)."""
    from kmat.run.config import RunConfig

    skip = {"options", "show_progress", *exclude}
    for name, info in options_of(RunConfig).items():
        if name not in skip:
            add_field_flag(parser, info)


def method_option_infos() -> dict[str, list[tuple[str, OptionInfo]]]:
    """``{field: [(method, info), ...]}`` over every registered method, in registry order."""
    from kmat.methods import available_methods, get_method

    out: dict[str, list[tuple[str, OptionInfo]]] = {}
    for m in available_methods():
        for name, info in options_of(get_method(m).Config).items():
            out.setdefault(name, []).append((m, info))
    return out


def add_method_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per method option, grouped by the config class that declares it, and ``-o``."""
    from kmat.methods.config import MethodConfig

    infos = method_option_infos()
    groups: dict[type, argparse._ArgumentGroup] = {}
    for name, per_method in infos.items():
        first = per_method[0][1]
        types = {i.type_name for _, i in per_method}
        if len(types) > 1:
            raise ConfigError(f"method option {name!r} has different types in different methods: {types}")
        defaults: dict[str, list[str]] = {}
        for m, i in per_method:
            defaults.setdefault(_fmt_default(i.default), []).append(m)
        if len(defaults) == 1:
            shown = f"default: {next(iter(defaults))}"
        else:
            shown = "defaults: " + "; ".join(f"{', '.join(ms)} {d}" for d, ms in defaults.items())
        owner = first.declared_by
        if owner not in groups:
            title = (
                "training recipe (every method; default: the method's published recipe)"
                if owner is MethodConfig
                else f"{_group_title(owner, per_method)} options"
            )
            groups[owner] = parser.add_argument_group(title)
        add_field_flag(groups[owner], first, help=f"{first.help} ({shown})")
    parser.add_argument(
        "-o",
        "--option",
        dest="method_options",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any option of the method's config by name (repeatable); "
        "--help-options lists them for --method",
    )
    parser.add_argument(
        "--help-options",
        action="store_true",
        help="list the options of --method (name, type, default, help) and exit",
    )


def _group_title(owner: type, per_method: list[tuple[str, OptionInfo]]) -> str:
    names = sorted({m for m, i in per_method if i.declared_by is owner})
    return ", ".join(names) if names else owner.__name__


def method_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The method options the user gave: generated flags, then ``-o NAME=VALUE`` (which wins)."""
    infos = method_option_infos()
    out = {name: getattr(args, name) for name in infos if hasattr(args, name)}
    for item in getattr(args, "method_options", []) or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"-o expects NAME=VALUE, got {item!r}")
        if name not in infos:
            raise ConfigError(
                f"no method has an option {name!r}; options: {', '.join(sorted(infos))}", field=name
            )
        out[name] = parse_value(infos[name][0][1], value)
    return out


def format_method_options(method: str) -> str:
    """The ``--help-options`` table of one method."""
    from kmat.methods import get_method

    cls = get_method(method)
    infos = options_of(cls.Config)
    width = max(len(n) for n in infos)
    tw = max(len(i.type_name) for i in infos.values())
    lines = [
        f"options of method {method!r} ({cls.Config.__name__}); set with -o NAME=VALUE or --name VALUE:",
        "",
    ]
    for name, i in infos.items():
        lines.append(
            f"  {name:<{width}}  {i.type_name:<{tw}}  default {_fmt_default(i.default):<12}  {i.help}"
        )
    return "\n".join(lines)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A run config file (JSON or YAML): :class:`RunConfig` fields, method options under ``options``."""
    path = Path(path)
    text = read_text_file(path, ConfigError, "config file")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # yaml.YAMLError or json.JSONDecodeError: name the file
        raise ConfigError(f"{path}: not a valid config file ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds an object of run settings, got {type(data).__name__}")
    from kmat.run.config import RunConfig

    known = set(options_of(RunConfig))
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown run setting(s) {unknown}; known: {sorted(known)}", field=unknown[0]
        )
    if not isinstance(data.get("options", {}), dict):
        raise ConfigError(f"{path}: 'options' must be an object of method options", field="options")
    return data


def option_default(name: str) -> Any:
    """The default of a :class:`RunConfig` field (for verbs that use it without a flag)."""
    from kmat.run.config import RunConfig

    return options_of(RunConfig)[name].default
