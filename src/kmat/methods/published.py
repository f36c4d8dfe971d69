"""Which official per-dataset configuration a paper task's high-end dataset takes.

The official BiomedCLIP prompt-learning code (the BiomedCoOp repository's configs for KgCoOp and
BiomedCoOp) publishes per-dataset values for the datasets of its own benchmark, none of which is a
K-MaT training dataset. kmat picks, per high-end dataset, the nearest official counterpart:

- MRA-MIDAS and Derm7pt dermoscopy (tasks skin1, skin2) -> DermaMNIST (dermoscopy images of
  pigmented skin lesions);
- CC-CCII chest CT (task chest) -> COVID (the official COVID-19 / pneumonia / normal chest image
  set: the same three-way label set; the official benchmark has no chest CT dataset);
- DMID mammography (task breast) and any other dataset -> the official code defaults (the official
  BUSI values are for *training* on ultrasound, which K-MaT never does: BUSI is its low-end set).

A method lists its values per counterpart; :func:`published_task_defaults` turns them into its
``task_defaults`` (keyed by kmat's high-end dataset keys), each with its source.
"""

from __future__ import annotations

from typing import Any

from kmat.methods.config import PublishedDefaults

OFFICIAL = "official BiomedCLIP config of the BiomedCoOp code"
COUNTERPARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dermamnist": ("DermaMNIST", ("midas", "derm7pt")),
    "covid": ("COVID", ("cc_ccii",)),
}


def published_task_defaults(**by_counterpart: dict[str, Any]) -> dict[str, PublishedDefaults]:
    """``{high-end dataset key: PublishedDefaults}`` from values per official counterpart."""
    out: dict[str, PublishedDefaults] = {}
    for key, values in by_counterpart.items():
        name, datasets = COUNTERPARTS[key]
        for ds in datasets:
            source = f"{OFFICIAL} for {name}, the nearest official counterpart of the high-end dataset {ds!r}"
            out[ds] = PublishedDefaults(dict(values), source)
    return out
