"""One-line texts for pydantic validation errors: ``high_end.crop_border: must be >= 0, got -1``."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError


def _json_text(value: Any, limit: int = 40) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems(err: ValidationError) -> list[str]:
    """Each error of ``err`` as ``field.path: what is wrong, got VALUE``."""
    out = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "missing":
            out.append(f"{where}: missing")
        elif e["type"] == "value_error":
            out.append(f"{where}: {str(e['msg']).removeprefix('Value error, ')}")
        else:
            msg = str(e["msg"])
            out.append(f"{where}: {msg[:1].lower()}{msg[1:]}, got {_json_text(e.get('input'))}")
    return out


def summary(err: ValidationError, most: int = 3) -> str:
    """The first ``most`` problems of ``err`` joined by ``; `` (and how many more)."""
    found = problems(err)
    more = f"; and {len(found) - most} more" if len(found) > most else ""
    return "; ".join(found[:most]) + more
