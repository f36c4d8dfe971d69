"""The shape of ``task.json``, checked with pydantic: a shape error names the file and the field.

    {"task": "breast", "classes": ["normal", "benign", "malignant"],
     "classnames": {"benign": "benign lesion"},
     "high_end": {"dataset": "dmid", "modality": "mammography", "display_name": "mammogram",
                  "manifest": "dmid__mammography.csv", "root": "...", "crop_border": 0,
                  "label_map": {"B": "benign"}},
     "low_end": {...}, "descriptions": "descriptions.json"}

Unknown keys are kept (preparers record provenance there). What the shape cannot say (a manifest's
rows, a class without images) is checked by :func:`kmat.data.task.load_task`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kmat.errors import TaskError
from kmat.utils.validation import summary


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class ModalitySpec(_Spec):
    modality: str = Field(min_length=1)
    manifest: str = Field(min_length=1)
    dataset: str = ""
    display_name: str | None = None
    root: str | None = None
    crop_border: int = Field(default=0, ge=0)
    label_map: dict[str, str] = Field(default_factory=dict)


class TaskSpec(_Spec):
    task: str | None = None
    classes: list[str] = Field(min_length=1)
    classnames: dict[str, str] = Field(default_factory=dict)
    high_end: ModalitySpec
    low_end: ModalitySpec
    descriptions: str = "descriptions.json"

    @field_validator("classes")
    @classmethod
    def _unique_keys(cls, classes: list[str]) -> list[str]:
        if any(not c for c in classes):
            raise ValueError("class keys must be non-empty strings")
        dupes = sorted({c for c in classes if classes.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate class keys {dupes}")
        return classes


def check_task_spec(data: Any, path: str | Path) -> TaskSpec:
    """``data`` (a parsed task.json) as a :class:`TaskSpec`; :class:`TaskError` naming ``path``
    and the fields at fault otherwise."""
    if not isinstance(data, dict):
        raise TaskError(
            f'{path}: expected an object {{"classes": [...], "high_end": {{...}}, ...}}, '
            f"got {type(data).__name__}"
        )
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as err:
        raise TaskError(f"{path}: {summary(err)}") from None
