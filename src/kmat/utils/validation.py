"""One-line texts for pydantic validation errors: ``high_end.crop_border: must be >= 0, got -1``."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError


def json_text(value: Any, limit: int = 40) -> str:
    """``NaN``, ``null``, ``"2"``: a value as it is written in a JSON file (shortened)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems(err: ValidationError, bare: Collection[str] = ()) -> list[str]:
    """Each error of ``err`` as ``field.path: what is wrong, got VALUE``; errors of a type in
    ``bare`` (custom errors whose message already shows the value) without the ``got`` part."""
    out = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "missing":
            out.append(f"{where}: missing")
        elif e["type"] in bare:
            out.append(f"{where}: {e['msg']}")
        elif e["type"] == "value_error":
            out.append(f"{where}: {str(e['msg']).removeprefix('Value error, ')}")
        else:
            msg = str(e["msg"])
            out.append(f"{where}: {msg[:1].lower()}{msg[1:]}, got {json_text(e.get('input'))}")
    return out


def summary(err: ValidationError, most: int = 3, bare: Collection[str] = ()) -> str:
    """The first ``most`` problems of ``err`` (:func:`problems`) joined by ``; `` (and how many more)."""
    found = problems(err, bare)
    more = f"; and {len(found) - most} more" if len(found) > most else ""
    return "; ".join(found[:most]) + more
